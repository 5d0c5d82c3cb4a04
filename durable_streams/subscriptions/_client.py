"""``SubscriptionClient``: the control routes of subscriptions (§7) and wake leases.

Everything goes through the core's transport (the same ``httpx.AsyncClient``,
headers, params, timeouts and retry policy as a :class:`~durable_streams.StreamHandle`,
log redaction included); error responses become the typed errors of
:func:`~durable_streams.error_for_control_response`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic
from pydantic import SecretStr

from durable_streams._codec import loads_json
from durable_streams._errors import InvalidArgumentError, ParseError, error_for_control_response
from durable_streams._handle import StreamHandle
from durable_streams._redact import excerpt, redact_url, scrub
from durable_streams._retry import RetryPolicy, call_with_retry
from durable_streams._transport import Transport
from durable_streams._types import HeadersArg, ParamsArg

from ._models import (
    AckResult,
    Claim,
    CreateSubscriptionResult,
    StreamAck,
    Subscription,
    SubscriptionConfig,
)

__all__ = ["SubscriptionClient"]

M = TypeVar("M", bound=pydantic.BaseModel)

#: Where the control routes live under the stream root (§7).
CONTROL_PREFIX = "__ds/subscriptions"


class SubscriptionClient:
    """Manage subscriptions and their wake leases on the server at ``root``.

    ``root`` is the stream root URL (the reference server's is
    ``http://host:port/v1/stream``): stream ``chats/42`` lives at
    ``{root}/chats/42`` and subscriptions at ``{root}/__ds/subscriptions/{id}``.
    ``client``, ``headers``, ``params``, ``timeout`` and ``retry`` are as for
    :class:`~durable_streams.StreamHandle` (and shared with the handles that
    :meth:`handle` makes). Calls that fail with a transport error, a 5xx or a 429
    are retried under ``retry``.

    Streams are named by root-relative paths in subscription bodies; every method
    also accepts a full stream URL under ``root`` (see :meth:`path_of`).

    Example::

        async with SubscriptionClient("http://127.0.0.1:4437/v1/stream") as subs:
            await subs.create(
                "indexer",
                SubscriptionConfig(type="pull-wake", pattern="chats/*", wake_stream="wakes"),
            )
            info = await subs.get("indexer")
            print(info.status, [s.path for s in info.streams])
    """

    def __init__(
        self,
        root: str,
        *,
        client: httpx.AsyncClient | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(root, str) or "://" not in root:
            raise InvalidArgumentError(
                "root must be an http(s) URL of the stream root", field="root"
            )
        root = root.rstrip("/")
        # The root's own transport validates every option once and owns the HTTP client
        # unless one was given; each control URL gets a transport sharing all of them.
        self._root = Transport(
            root, client=client, headers=headers, params=params, timeout=timeout, retry=retry
        )
        self._headers = headers
        self._params = params
        self._timeout = timeout

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SubscriptionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client created it."""
        await self._root.aclose()

    def __repr__(self) -> str:
        return f"SubscriptionClient({redact_url(self.root)!r})"

    # -- streams: paths and URLs -------------------------------------------------------------

    @property
    def root(self) -> str:
        """The stream root URL (without a trailing slash)."""
        return self._root.url

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client the calls (and the handles of :meth:`handle`) use."""
        return self._root.client

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of the calls."""
        return self._root.retry

    def path_of(self, stream: str) -> str:
        """The root-relative path of ``stream``: a full URL under the root, or a path.

        Example::

            subs.path_of("http://127.0.0.1:4437/v1/stream/chats/42")  # "chats/42"
            subs.path_of("/chats/42")                                 # "chats/42"
        """
        if not isinstance(stream, str):
            raise InvalidArgumentError("a stream is a root-relative path or a stream URL")
        if "://" in stream:
            prefix = self.root + "/"
            if not stream.startswith(prefix):
                raise InvalidArgumentError(
                    f"stream URL {redact_url(stream)} is not under the stream root "
                    f"{redact_url(self.root)}"
                )
            stream = stream[len(prefix) :]
        path = stream.strip("/")
        if not path:
            raise InvalidArgumentError("a stream path must not be empty")
        return path

    def url_of(self, stream: str) -> str:
        """The full URL of the stream at root-relative ``stream`` (a URL is checked and kept).

        Example::

            subs.url_of("chats/42")  # "http://127.0.0.1:4437/v1/stream/chats/42"
        """
        return f"{self.root}/{self.path_of(stream)}"

    def handle(self, stream: str, *, content_type: str | None = None) -> StreamHandle:
        """A :class:`~durable_streams.StreamHandle` on ``stream`` sharing this client's HTTP
        client and options (closing it leaves the shared HTTP client open).

        Example::

            chat = subs.handle("chats/42")
            await chat.append({"text": "hi"})
        """
        return StreamHandle(
            self.url_of(stream),
            client=self.client,
            content_type=content_type,
            headers=self._headers,
            params=self._params,
            timeout=self._timeout,
            retry=self.retry,
        )

    # -- management --------------------------------------------------------------------------

    async def create(
        self, subscription_id: str, config: SubscriptionConfig
    ) -> CreateSubscriptionResult:
        """Create subscription ``subscription_id`` (``PUT``), or confirm an identical one.

        ``created`` is true for 201 (new) and false for 200 (the same configuration
        exists). Another configuration under the id raises
        :class:`~durable_streams.SubscriptionExistsError`.

        Example::

            result = await subs.create(
                "indexer",
                SubscriptionConfig(type="pull-wake", pattern="chats/*", wake_stream="wakes"),
            )
            print(result.created, result.subscription.lease_ttl_ms)
        """
        if not isinstance(config, SubscriptionConfig):
            raise InvalidArgumentError("config must be a SubscriptionConfig", field="config")
        body = config.body()
        if config.streams:
            body["streams"] = [self.path_of(stream) for stream in config.streams]
        if config.wake_stream is not None:
            body["wake_stream"] = self.path_of(config.wake_stream)
        response = await self._call(
            "PUT",
            self._subscription_url(subscription_id),
            operation="create subscription",
            ok=(200, 201),
            body=body,
        )
        subscription = _parse(Subscription, response, "create subscription")
        return CreateSubscriptionResult(
            created=response.status_code == 201, subscription=subscription
        )

    async def get(self, subscription_id: str) -> Subscription:
        """The subscription with its linked streams, acked offsets and status.

        Example::

            sub = await subs.get("indexer")
        """
        response = await self._call(
            "GET", self._subscription_url(subscription_id), operation="get subscription", ok=(200,)
        )
        return _parse(Subscription, response, "get subscription")

    async def delete(self, subscription_id: str) -> None:
        """Delete the subscription (later claims, acks and releases of it fail).

        Example::

            await subs.delete("indexer")
        """
        await self._call(
            "DELETE",
            self._subscription_url(subscription_id),
            operation="delete subscription",
            ok=(200, 204),
        )

    async def link(self, subscription_id: str, streams: Iterable[str]) -> None:
        """Link ``streams`` (paths or URLs) explicitly; each is linked at its tail
        (its existing data is not work). Linking again changes nothing.

        Example::

            await subs.link("indexer", ["chats/42", "chats/43"])
        """
        if isinstance(streams, str):
            raise InvalidArgumentError("streams must be a list of paths, not one string")
        paths = [self.path_of(stream) for stream in streams]
        if not paths:
            raise InvalidArgumentError("link at least one stream", field="streams")
        await self._call(
            "POST",
            self._subscription_url(subscription_id, "streams"),
            operation="link streams",
            ok=(200, 204),
            body={"streams": paths},
        )

    async def unlink(self, subscription_id: str, stream: str) -> None:
        """Remove the explicit link of ``stream`` (a link made by the pattern stays).

        Example::

            await subs.unlink("indexer", "chats/42")
        """
        path = quote(self.path_of(stream), safe="")
        await self._call(
            "DELETE",
            self._subscription_url(subscription_id, "streams", path),
            operation="unlink stream",
            ok=(200, 204),
        )

    # -- wake leases (pull-wake) -------------------------------------------------------------

    async def claim(self, subscription_id: str, *, worker: str) -> Claim:
        """Claim the subscription's current wake for ``worker``: the lease to process it.

        Raises :class:`~durable_streams.AlreadyClaimedError` while another worker holds
        it (``current_holder``, ``generation``) and
        :class:`~durable_streams.NoPendingWorkError` when there is nothing to do.

        Example::

            claim = await subs.claim("indexer", worker="worker-1")
        """
        if not isinstance(worker, str) or not worker:
            raise InvalidArgumentError("worker must be a non-empty string", field="worker")
        response = await self._call(
            "POST",
            self._subscription_url(subscription_id, "claim"),
            operation="claim",
            ok=(200,),
            body={"worker": worker},
        )
        return _parse(Claim, response, "claim", extra={"subscription_id": subscription_id})

    async def ack(
        self, claim: Claim, acks: Iterable[StreamAck] = (), *, done: bool = False
    ) -> AckResult:
        """Acknowledge progress of a claimed wake; without ``done`` it is a heartbeat
        (it extends the lease), with ``done=True`` it ends the wake and frees the lease.

        Each :class:`StreamAck` carries the ``Stream-Next-Offset`` reached on a stream
        (inclusive: the next reader starts there). A newer wake raises
        :class:`~durable_streams.FencedError`: stop processing, never ack again.

        Example::

            await subs.ack(claim, [StreamAck(stream="chats/42", offset=next_offset)], done=True)
        """
        _check_claim(claim)
        return await self._post_ack(
            self._subscription_url(claim.subscription_id, "ack"),
            claim.token,
            wake_id=claim.wake_id,
            generation=claim.generation,
            acks=acks,
            done=done,
            operation="ack",
        )

    async def heartbeat(self, claim: Claim, acks: Iterable[StreamAck] = ()) -> AckResult:
        """Extend the lease of ``claim`` (an ack without ``done``), with any progress.

        Example::

            await subs.heartbeat(claim)
        """
        return await self.ack(claim, acks, done=False)

    async def release(self, claim: Claim) -> None:
        """Give the wake up without acknowledging (another worker gets the work).

        Example::

            await subs.release(claim)
        """
        _check_claim(claim)
        await self._call(
            "POST",
            self._subscription_url(claim.subscription_id, "release"),
            operation="release",
            ok=(200, 204),
            body={"wake_id": claim.wake_id, "generation": claim.generation},
            token=claim.token.get_secret_value(),
        )

    async def ack_callback(
        self,
        callback_url: str,
        callback_token: str | SecretStr,
        *,
        wake_id: str,
        generation: int,
        acks: Iterable[StreamAck] = (),
        done: bool = False,
    ) -> AckResult:
        """Acknowledge a webhook wake through its ``callback_url`` (the same request
        shape as :meth:`ack`, authorized by ``callback_token``).

        Example::

            await subs.ack_callback(
                wake["callback_url"], wake["callback_token"],
                wake_id=wake["wake_id"], generation=wake["generation"],
                acks=[StreamAck(stream="chats/42", offset=next_offset)], done=True,
            )
        """
        if not isinstance(callback_url, str) or "://" not in callback_url:
            raise InvalidArgumentError("callback_url must be an http(s) URL", field="callback_url")
        token = (
            callback_token if isinstance(callback_token, SecretStr) else SecretStr(callback_token)
        )
        return await self._post_ack(
            callback_url,
            token,
            wake_id=wake_id,
            generation=generation,
            acks=acks,
            done=done,
            operation="ack callback",
        )

    # -- internals ---------------------------------------------------------------------------

    async def _post_ack(
        self,
        url: str,
        token: SecretStr,
        *,
        wake_id: str,
        generation: int,
        acks: Iterable[StreamAck],
        done: bool,
        operation: str,
    ) -> AckResult:
        """The one ack request of pull-wake acks, heartbeats and webhook callbacks."""
        if not isinstance(wake_id, str) or not wake_id:
            raise InvalidArgumentError("wake_id must be a non-empty string", field="wake_id")
        if isinstance(generation, bool) or not isinstance(generation, int):
            raise InvalidArgumentError("generation must be an int", field="generation")
        if not isinstance(done, bool):
            raise InvalidArgumentError("done must be a bool", field="done")
        entries = []
        for ack in acks:
            if not isinstance(ack, StreamAck):
                raise InvalidArgumentError("acks must be StreamAck records", field="acks")
            entries.append({"stream": self.path_of(ack.stream), "offset": ack.offset})
        body = {"wake_id": wake_id, "generation": generation, "acks": entries, "done": done}
        response = await self._call(
            "POST",
            url,
            operation=operation,
            ok=(200,),
            body=body,
            token=token.get_secret_value(),
        )
        return _parse(AckResult, response, operation)

    def _subscription_url(self, subscription_id: str, *parts: str) -> str:
        if not isinstance(subscription_id, str) or not subscription_id:
            raise InvalidArgumentError(
                "subscription_id must be a non-empty string", field="subscription_id"
            )
        path = "/".join((CONTROL_PREFIX, quote(subscription_id, safe=""), *parts))
        return f"{self.root}/{path}"

    async def _call(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        ok: tuple[int, ...],
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        """One control request, retried under the policy; errors are typed, tokens scrubbed."""
        transport = Transport(
            url,
            client=self.client,
            headers=self._headers,
            params=self._params,
            timeout=self._timeout,
            retry=self.retry,
        )
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        protocol_headers = {"content-type": "application/json"} if content is not None else {}
        if token is not None:
            protocol_headers["authorization"] = f"Bearer {token}"

        async def attempt() -> httpx.Response:
            request = await transport.build(
                method, protocol_headers=protocol_headers, content=content
            )
            response = await transport.send(request, operation=operation)
            if response.status_code in ok:
                return response
            error_body = response.content
            if token is not None and token.encode() in error_body:
                error_body = scrub(error_body.decode("utf-8", "replace"), (token,)).encode()
            raise error_for_control_response(response, operation=operation, body=error_body)

        return await call_with_retry(self.retry, attempt, what=operation)


def _check_claim(claim: object) -> None:
    if not isinstance(claim, Claim):
        raise InvalidArgumentError("claim must be a Claim (from SubscriptionClient.claim)")


def _parse(
    model: type[M],
    response: httpx.Response,
    operation: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> M:
    """Validate a response body with ``model``; anything malformed is a ParseError.

    The message never quotes the body, only its size and type, and names the fields
    that failed, never their values: a claim (and possibly an ack or a callback
    answer) carries a token, and a truncated body can cut a token anywhere, where
    no scrubbing could be trusted to find it. The errors are raised outside the
    ``except`` blocks, so no exception chain leads back to the body either.
    """
    url = str(response.request.url) if response.request is not None else None
    try:
        document = loads_json(response.content)
    except ValueError:
        document = _NOT_JSON
    if document is _NOT_JSON:
        kind = response.headers.get("content-type", "no content type").partition(";")[0]
        raise ParseError(
            f"{operation}: the server's answer is not JSON "
            f"({len(response.content)} bytes, {excerpt(kind, 60)})",
            url=url,
            status=response.status_code,
        )
    if not isinstance(document, dict):
        raise ParseError(
            f"{operation}: the server's answer is not a JSON object",
            url=url,
            status=response.status_code,
        )
    if extra:
        document = {**document, **extra}
    problems = ""
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)[:5]
        )
    raise ParseError(
        f"{operation}: unexpected answer from the server ({problems})",
        url=url,
        status=response.status_code,
    )


#: Marks a body that did not parse (``None`` is the JSON ``null``).
_NOT_JSON = object()
