"""Subscriptions (PROTOCOL §7), the pull-wake half: the control routes, their state and rules.

No sockets and no background tasks: :mod:`._server` hands a control request
(``{root}/__ds/...``) to :meth:`Subscriptions.answer`, reports appends and deletions
(:meth:`Subscriptions.on_append`, :meth:`Subscriptions.on_delete`) and runs
:meth:`Subscriptions.expire` before each request and while a reader waits, so a lease that
runs out re-wakes its subscription even when nobody calls the server (the reference server
uses a timer). Wake events are appended to the app's wake stream through :class:`._store.Store`.

The rules are the pinned reference server's (``SubscriptionManager``): streams are linked at
their tail; a stream a pattern matches is linked when data is appended to it, from its start;
a wake is created (generation + 1, a wake event) when a linked stream has data past its acked
offset and no wake is in progress, and again when a wake ends (done, release, lease expiry)
with work left. Offsets are compared as strings, as the reference does.

``callback`` answers like ``ack`` (as the reference does for a pull-wake subscription).
Differences: wake tokens are random (``secrets.token_urlsafe``), remembered per subscription
(the last :data:`TOKENS_KEPT`), instead of signed; webhook subscriptions are refused; a
malformed body the reference answers with a 500 is a 400 ``INVALID_REQUEST`` here.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

import anyio

from ._store import ZERO_OFFSET, ProtocolFailure, Store
from ._wire import Reply, Request

CONTROL_SEGMENT = "__ds"
DEFAULT_LEASE_TTL_MS = 30_000
MIN_LEASE_TTL_MS = 1_000
MAX_LEASE_TTL_MS = 600_000
#: How long a wake token is accepted (the reference's tokens live an hour), in seconds.
TOKEN_LIFETIME = 3600.0
#: Tokens remembered per subscription: an older one is TOKEN_INVALID rather than FENCED.
TOKENS_KEPT = 64
BEFORE_FIRST_OFFSET = "-1"
WEBHOOKS_UNSUPPORTED = "webhook subscriptions are not supported by durable_streams.testing"

_ACTIONS = ("callback", "claim", "ack", "release")


def control_root(path: str) -> str | None:
    """The stream root of a control route (the path before its ``__ds`` segment), or None.

    ``control_root("/v1/stream/__ds/subscriptions/s") == "/v1/stream"``.
    """
    segments = path.split("/")
    if CONTROL_SEGMENT not in segments:
        return None
    return "/".join(segments[: segments.index(CONTROL_SEGMENT)])


def normalize(path: str) -> str:
    """A root-relative path without leading or trailing slashes (the reference's rule)."""
    return path.strip("/")


def glob_match(pattern: str, path: str) -> bool:
    """``*`` matches one segment, ``**`` any number (none too); ``%2A`` is a literal ``*``.

    The reference's matcher, but memoized: a pattern of many ``**`` costs at most
    (pattern segments x path segments) steps, not exponentially many.
    """
    return _match(_segments(pattern), 0, _segments(path), 0, set())


def _segments(path: str) -> list[str]:
    return [segment for segment in normalize(path).split("/") if segment]


def _match(
    pattern: list[str], pi: int, path: list[str], si: int, failed: set[tuple[int, int]]
) -> bool:
    while pi < len(pattern) and si < len(path):
        segment = pattern[pi]
        if segment == "**":
            if (pi, si) in failed:
                return False
            for i in range(si, len(path) + 1):
                if _match(pattern, pi + 1, path, i, failed):
                    return True
            failed.add((pi, si))
            return False
        if segment != "*" and segment.replace("%2A", "*").replace("%2a", "*") != path[si]:
            return False
        pi += 1
        si += 1
    while pi < len(pattern) and pattern[pi] == "**":
        pi += 1
    return pi == len(pattern) and si == len(path)


class ControlError(Exception):
    """A refused control request: ``{"error": {"code", "message", ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str | None, **extra: Any) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.error: dict[str, Any] = {"code": code}
        if message is not None:
            self.error["message"] = message
        self.error.update(extra)


def _invalid(message: str) -> ControlError:
    return ControlError(400, "INVALID_REQUEST", message)


def _not_found() -> ControlError:
    return ControlError(404, "SUBSCRIPTION_NOT_FOUND", "Subscription not found")


def _bad_offset(message: str) -> ControlError:
    return ControlError(409, "INVALID_OFFSET", message)


@dataclass(frozen=True)
class Config:
    """A normalized subscription config; two PUTs are identical when their configs are equal."""

    type: str
    pattern: str | None
    streams: tuple[str, ...]
    wake_stream: str | None
    lease_ttl_ms: int
    description: str | None
    webhook_url: str | None

    @property
    def identity(self) -> tuple[object, ...]:
        return (
            self.type,
            self.pattern,
            tuple(sorted(set(self.streams))),
            self.webhook_url,
            self.wake_stream,
            self.lease_ttl_ms,
            self.description,
        )


@dataclass
class Link:
    """A linked stream: why (``explicit``, ``glob`` or both) and how far it is acked."""

    path: str
    link_types: set[str]
    acked_offset: str

    @property
    def link_type(self) -> str:
        return "explicit" if "explicit" in self.link_types else "glob"


@dataclass
class Token:
    generation: int
    expires: float


@dataclass
class Subscription:
    """One pull-wake subscription under ``root`` and its wake state."""

    root: str
    id: str
    config: Config
    created_at: str
    links: dict[str, Link] = field(default_factory=dict)
    generation: int = 0
    wake_id: str | None = None
    holder: str | None = None
    #: Clock time the current lease ends (None: no lease).
    lease_due: float | None = None
    tokens: OrderedDict[str, Token] = field(default_factory=OrderedDict)

    def end_wake(self) -> None:
        self.lease_due = None
        self.holder = None
        self.wake_id = None


class Subscriptions:
    """Every subscription of one server, by ``(root, id)``; see the module docstring.

    ``clock`` is the lease clock in seconds (anyio's, so a test clock applies).
    """

    def __init__(self, store: Store, clock: Callable[[], float] = anyio.current_time) -> None:
        self.store = store
        self.clock = clock
        self.by_key: dict[tuple[str, str], Subscription] = {}
        #: Events of waiting readers, set when a lease deadline changes (see ``next_due_in``).
        self.schedule_waiters: set[anyio.Event] = set()

    # -- what the server reports ------------------------------------------------------------

    def on_append(self, path: str) -> None:
        """Data was appended to (or created with) the stream at ``path``: link, maybe wake."""
        for subscription in list(self.by_key.values()):
            relative = self._relative(subscription.root, path)
            if relative is None:
                continue
            pattern = subscription.config.pattern
            if pattern and glob_match(pattern, relative):
                existing = subscription.links.get(relative)
                self._link(
                    subscription,
                    relative,
                    "glob",
                    existing.acked_offset if existing else BEFORE_FIRST_OFFSET,
                )
            if relative in subscription.links:
                self._maybe_wake(subscription, relative)

    def on_delete(self, path: str) -> None:
        """The stream at ``path`` was deleted: it is no longer linked anywhere."""
        for subscription in self.by_key.values():
            relative = self._relative(subscription.root, path)
            if relative is not None:
                subscription.links.pop(relative, None)

    def expire(self) -> None:
        """End every lease that has run out; a subscription with work left wakes again."""
        now = self.clock()
        due = [s for s in self.by_key.values() if s.lease_due is not None and s.lease_due <= now]
        for subscription in sorted(due, key=lambda s: s.lease_due or 0.0):
            subscription.end_wake()
            self._wake_if_pending(subscription)

    def next_due_in(self) -> float | None:
        """Seconds (by :attr:`clock`) until the next lease runs out, if any lease is held."""
        dues = [s.lease_due for s in self.by_key.values() if s.lease_due is not None]
        return None if not dues else max(0.0, min(dues) - self.clock())

    # -- the control routes -----------------------------------------------------------------

    def answer(self, request: Request, method: str, root: str) -> Reply:
        """Answer a control request under ``root`` (``{root}/__ds/...``)."""
        try:
            return self._route(request, method, root)
        except ControlError as refused:
            return _json_reply(refused.status, {"error": refused.error})

    def _route(self, request: Request, method: str, root: str) -> Reply:
        rest = request.path[len(root) :]
        prefix = f"/{CONTROL_SEGMENT}/subscriptions/"
        if rest == f"/{CONTROL_SEGMENT}/jwks.json":
            raise ControlError(404, "SUBSCRIPTION_NOT_FOUND", WEBHOOKS_UNSUPPORTED)
        parts = rest[len(prefix) :].split("/") if rest.startswith(prefix) else []
        subscription_id = unquote(parts[0]) if parts else ""
        action = parts[1] if len(parts) > 1 else None
        tail = parts[2:]
        if (
            not subscription_id
            or (action is not None and action not in ("streams", *_ACTIONS))
            or (tail and action != "streams")
        ):
            raise ControlError(
                404, "SUBSCRIPTION_NOT_FOUND", "Durable Streams control route not found"
            )
        key = (root, subscription_id)
        if action is None:
            if method == "PUT":
                return self._put(key, request)
            if method == "GET":
                return _json_reply(200, self._serialize(self._get(key)))
            if method == "DELETE":
                self.by_key.pop(key, None)
                return Reply(204)
        elif action == "streams" and not tail:
            if method == "POST":
                return self._link_explicit(key, _json_object(request.body))
        elif action == "streams":
            if method == "DELETE":
                self._unlink(key, normalize(unquote("/".join(tail))))
                return Reply(204)
        elif action == "claim":
            return self._claim(key, _json_object(request.body))
        elif action in ("ack", "callback"):  # the reference's callback: an ack, unchecked type
            token = _bearer(request)
            return self._ack(key, token, _json_object(request.body))
        elif action == "release":
            token = _bearer(request)
            self._release(key, token, _json_object(request.body))
            return Reply(204)
        return Reply(405, [("content-type", "text/plain")], b"Method not allowed")

    # -- management -------------------------------------------------------------------------

    def _get(self, key: tuple[str, str]) -> Subscription:
        subscription = self.by_key.get(key)
        if subscription is None:
            raise _not_found()
        return subscription

    def _put(self, key: tuple[str, str], request: Request) -> Reply:
        config = _parse_config(_json_value(request.body))
        existing = self.by_key.get(key)
        if existing is not None:
            if existing.config.identity != config.identity:
                raise ControlError(
                    409,
                    "SUBSCRIPTION_ALREADY_EXISTS",
                    "Subscription already exists with different configuration",
                )
            return _json_reply(200, self._serialize(existing))
        if config.type == "webhook":
            raise _invalid(WEBHOOKS_UNSUPPORTED)
        root, subscription_id = key
        subscription = Subscription(
            root=root,
            id=subscription_id,
            config=config,
            created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z",
        )
        for stream in config.streams:
            self._link(subscription, stream, "explicit", self._tail(root, stream))
        if config.pattern:
            for path in list(self.store.streams):
                relative = self._relative(root, path)
                if relative is None or self.store.get(path) is None:
                    continue
                if glob_match(config.pattern, relative):
                    self._link(subscription, relative, "glob", self._tail(root, relative))
        self.by_key[key] = subscription
        return _json_reply(201, self._serialize(subscription))

    def _link_explicit(self, key: tuple[str, str], body: dict[str, Any]) -> Reply:
        streams = body.get("streams")
        if not isinstance(streams, list) or not all(isinstance(s, str) and s for s in streams):
            raise _invalid("streams must be a non-empty string array")
        subscription = self._get(key)
        for stream in streams:
            path = normalize(stream)
            self._link(subscription, path, "explicit", self._tail(subscription.root, path))
        return Reply(204)

    def _unlink(self, key: tuple[str, str], path: str) -> None:
        link = self._get(key).links.get(path)
        if link is None:
            return
        link.link_types.discard("explicit")
        if not link.link_types:
            del self._get(key).links[path]

    # -- wakes and leases -------------------------------------------------------------------

    def _claim(self, key: tuple[str, str], body: dict[str, Any]) -> Reply:
        worker = body.get("worker")
        if not isinstance(worker, str) or not worker:
            raise _invalid("worker must be a non-empty string")
        subscription = self._get(key)
        if subscription.holder is not None:
            raise ControlError(
                409,
                "ALREADY_CLAIMED",
                None,
                current_holder=subscription.holder,
                generation=subscription.generation,
            )
        pending = self._first_pending(subscription)
        if pending is None:
            raise ControlError(409, "NO_PENDING_WORK", "Subscription has no pending work")
        if subscription.wake_id is None:
            self._create_wake(subscription, pending)
        subscription.holder = worker
        token = secrets.token_urlsafe(32)
        subscription.tokens[token] = Token(subscription.generation, self.clock() + TOKEN_LIFETIME)
        while len(subscription.tokens) > TOKENS_KEPT:
            subscription.tokens.popitem(last=False)
        self._extend_lease(subscription)
        return _json_reply(
            200,
            {
                "wake_id": subscription.wake_id,
                "generation": subscription.generation,
                "token": token,
                "streams": self._stream_infos(subscription),
                "lease_ttl_ms": subscription.config.lease_ttl_ms,
            },
        )

    def _ack(self, key: tuple[str, str], token: str, body: dict[str, Any]) -> Reply:
        subscription = self._get(key)
        self._check_wake(subscription, token, body)
        self._apply_acks(subscription, body.get("acks"))
        self._extend_lease(subscription)
        next_wake = False
        if body.get("done") is True:
            subscription.end_wake()
            next_wake = self._wake_if_pending(subscription)
        return _json_reply(200, {"ok": True, "next_wake": next_wake})

    def _release(self, key: tuple[str, str], token: str, body: dict[str, Any]) -> None:
        subscription = self._get(key)
        self._check_wake(subscription, token, body)
        subscription.end_wake()
        self._wake_if_pending(subscription)

    def _check_wake(self, subscription: Subscription, token: str, body: dict[str, Any]) -> None:
        issued = subscription.tokens.get(token)
        if issued is None:
            raise ControlError(401, "TOKEN_INVALID", "Token invalid")
        if self.clock() > issued.expires:
            raise ControlError(401, "TOKEN_EXPIRED", "Token expired")
        generation = body.get("generation")
        if (
            issued.generation != subscription.generation
            or isinstance(generation, bool)
            or not isinstance(generation, (int, float))
            or generation != subscription.generation
            or subscription.wake_id is None
            or body.get("wake_id") != subscription.wake_id
        ):
            raise ControlError(409, "FENCED", "Wake generation is stale")

    def _apply_acks(self, subscription: Subscription, acks: object) -> None:
        if not acks:
            return
        if not isinstance(acks, list):
            raise _invalid("acks must be an array")
        checked: list[tuple[Link, str]] = []
        for ack in acks:
            ack = ack if isinstance(ack, dict) else {}
            named = ack.get("stream", ack.get("path"))
            path = normalize(named) if isinstance(named, str) else ""
            link = subscription.links.get(path)
            if not path or link is None:
                raise _bad_offset("Ack references an unknown subscription stream")
            offset = ack.get("offset")
            if not isinstance(offset, str):
                raise _bad_offset("Ack offset must be a string")
            if offset == BEFORE_FIRST_OFFSET:
                raise _bad_offset("Ack offset must not be -1")
            if offset < link.acked_offset:
                raise _bad_offset("Ack offset regresses the committed cursor")
            if offset > self._tail(subscription.root, path):
                raise _bad_offset("Ack offset is beyond stream tail")
            checked.append((link, offset))
        for link, offset in checked:
            link.acked_offset = offset

    def _extend_lease(self, subscription: Subscription) -> None:
        subscription.lease_due = self.clock() + subscription.config.lease_ttl_ms / 1000
        waiters, self.schedule_waiters = self.schedule_waiters, set()
        for event in waiters:
            event.set()

    def _maybe_wake(self, subscription: Subscription, triggered_by: str) -> None:
        if subscription.wake_id is not None or subscription.holder is not None:
            return
        if self._first_pending(subscription) is not None:
            self._create_wake(subscription, triggered_by)

    def _wake_if_pending(self, subscription: Subscription) -> bool:
        pending = self._first_pending(subscription)
        if pending is None:
            return False
        self._create_wake(subscription, pending)
        return True

    def _create_wake(self, subscription: Subscription, triggered_by: str) -> None:
        subscription.generation += 1
        subscription.wake_id = f"w_{secrets.token_hex(12)}"
        wake_stream = subscription.config.wake_stream
        if wake_stream is None:
            return
        path = f"{subscription.root}/{wake_stream}"
        stream = self.store.get(path)
        if stream is None or stream.soft_deleted:
            return  # the reference only logs a warning: the app creates its wake stream
        event = {
            "type": "wake",
            "subscription_id": subscription.id,
            "stream": triggered_by,
            "generation": subscription.generation,
            "ts": int(time.time() * 1000),
        }
        try:
            self.store.append(
                path,
                json.dumps(event, separators=(",", ":")).encode(),
                content_type=stream.content_type,
                seq=None,
                close=False,
                producer=None,
            )
        except ProtocolFailure:
            return  # e.g. the wake stream is closed: the wake exists, unannounced

    # -- streams ----------------------------------------------------------------------------

    def _link(self, subscription: Subscription, path: str, link_type: str, acked: str) -> None:
        path = normalize(path)
        existing = subscription.links.get(path)
        if existing is not None:
            existing.link_types.add(link_type)
        else:
            subscription.links[path] = Link(path, {link_type}, acked)

    def _tail(self, root: str, relative: str) -> str:
        stream = self.store.get(f"{root}/{normalize(relative)}")
        return ZERO_OFFSET if stream is None else stream.next_offset

    @staticmethod
    def _relative(root: str, path: str) -> str | None:
        if not path.startswith(root + "/"):
            return None
        relative = path[len(root) + 1 :]
        if relative == CONTROL_SEGMENT or relative.startswith(CONTROL_SEGMENT + "/"):
            return None
        return relative or None

    def _stream_infos(self, subscription: Subscription) -> list[dict[str, Any]]:
        infos = []
        for link in subscription.links.values():
            tail = self._tail(subscription.root, link.path)
            infos.append(
                {
                    "path": link.path,
                    "link_type": link.link_type,
                    "acked_offset": link.acked_offset,
                    "tail_offset": tail,
                    "has_pending": tail > link.acked_offset,
                }
            )
        return infos

    def _first_pending(self, subscription: Subscription) -> str | None:
        for info in self._stream_infos(subscription):
            if info["has_pending"]:
                return str(info["path"])
        return None

    def _serialize(self, subscription: Subscription) -> dict[str, Any]:
        config = subscription.config
        body: dict[str, Any] = {
            "id": subscription.id,
            "subscription_id": subscription.id,
            "type": config.type,
        }
        if config.pattern is not None:
            body["pattern"] = config.pattern
        body["streams"] = [
            {
                "path": info["path"],
                "link_type": info["link_type"],
                "acked_offset": info["acked_offset"],
            }
            for info in self._stream_infos(subscription)
        ]
        if config.wake_stream is not None:
            body["wake_stream"] = config.wake_stream
        body["lease_ttl_ms"] = config.lease_ttl_ms
        body["created_at"] = subscription.created_at
        body["status"] = "active"
        if config.description is not None:
            body["description"] = config.description
        return body


# -- request bodies ---------------------------------------------------------------------------


def _json_reply(status: int, body: object) -> Reply:
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Reply(status, [("content-type", "application/json")], data)


def _json_value(body: bytes) -> object:
    if not body:
        return {}
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid("Invalid JSON body") from None


def _json_object(body: bytes) -> dict[str, Any]:
    value = _json_value(body)
    return value if isinstance(value, dict) else {}


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise ControlError(401, "TOKEN_INVALID", "Missing or malformed Authorization header")
    return header[len("Bearer ") :]


def _parse_config(value: object) -> Config:
    """The reference's ``parseCreateInput``: the same checks and messages, in its order."""
    if isinstance(value, list):
        value = {}  # a JSON array is an object to the reference's check
    if not isinstance(value, dict):
        raise _invalid("Request body must be a JSON object")
    kind = value.get("type")
    if kind not in ("webhook", "pull-wake"):
        raise _invalid('type must be "webhook" or "pull-wake"')
    raw_pattern = value.get("pattern")
    pattern = normalize(raw_pattern) if isinstance(raw_pattern, str) and raw_pattern else None
    raw_streams = value.get("streams")
    streams: list[str] = []
    if isinstance(raw_streams, list) and raw_streams:
        if not all(isinstance(s, str) for s in raw_streams):
            raise _invalid("streams must contain only strings")
        streams = [normalize(s) for s in raw_streams]
    if not pattern and not streams:
        raise _invalid("At least one of pattern or streams is required")
    lease = value.get("lease_ttl_ms", DEFAULT_LEASE_TTL_MS)
    if (
        isinstance(lease, bool)
        or not isinstance(lease, (int, float))
        or not MIN_LEASE_TTL_MS <= lease <= MAX_LEASE_TTL_MS  # NaN and infinities fail here
        or lease != int(lease)
    ):
        raise _invalid("lease_ttl_ms must be an integer from 1000 to 600000")
    webhook_url: str | None = None
    if kind == "webhook":
        webhook = value.get("webhook")
        url = webhook.get("url") if isinstance(webhook, dict) else None
        if not isinstance(url, str) or not url:
            raise _invalid("webhook subscriptions require webhook.url")
        webhook_url = url
    raw_wake = value.get("wake_stream")
    wake_stream = normalize(raw_wake) if isinstance(raw_wake, str) and raw_wake else None
    if kind == "pull-wake" and not wake_stream:
        raise _invalid("pull-wake subscriptions require wake_stream")
    description = value.get("description")
    return Config(
        type=kind,
        pattern=pattern,
        streams=tuple(streams),
        wake_stream=wake_stream,
        lease_ttl_ms=int(lease),
        description=description if isinstance(description, str) else None,
        webhook_url=webhook_url,
    )
