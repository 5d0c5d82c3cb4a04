"""Webhook verification (§7): the ``Webhook-Signature`` checks, and the wake it carries.

A webhook request is trusted only after, in this order: its header parses
strictly, its timestamp is within the tolerance, its ``kid`` names a key of the
server's JWKS, and the Ed25519 signature over ``t + "." + raw body`` holds. Only
then is the body parsed, and its ``subscription_id`` must be the expected one.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping
from typing import Annotated

import pydantic

from durable_streams._errors import InvalidArgumentError, WebhookVerificationError

from ._client import SubscriptionClient
from ._jwks import JwksCache, decode_base64url, signature_holds
from ._models import AckResult, ClaimedStream, StreamAck

__all__ = [
    "MAX_WEBHOOK_BODY",
    "SIGNATURE_HEADER",
    "WebhookNotification",
    "verify",
]

#: The header carrying ``t=<unix seconds>,kid=<key id>,ed25519=<signature>``.
SIGNATURE_HEADER = "webhook-signature"
#: A longer signature header is refused unread (a real one is about 150 characters).
MAX_SIGNATURE_HEADER = 1024
#: Webhook bodies larger than this are refused (a wake lists its streams: a few KiB).
MAX_WEBHOOK_BODY = 1024 * 1024
#: Seconds a webhook's timestamp may differ from the receiver's clock.
DEFAULT_TOLERANCE = 300.0

_DIGITS = re.compile(r"[0-9]{1,12}")
_KID = re.compile(r"[A-Za-z0-9._:~-]{1,128}")
_SIGNATURE_BYTES = 64

Headers = Mapping[str, str] | Iterable[tuple[bytes, bytes]]
"""Request headers: a mapping (Starlette's, httpx's, a dict) or ASGI's raw name/value pairs."""


class WebhookNotification(pydantic.BaseModel):
    """A verified webhook wake: which streams have work, and how to acknowledge it later.

    ``callback_token`` is a :class:`pydantic.SecretStr` (``get_secret_value()``
    reads it): it never shows in ``repr``, ``str`` or logs. Example::

        wake = await verify(headers, body, subscription_id="orders", keys=keys)
        print(wake.wake_id, wake.generation, [s.path for s in wake.streams])
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    subscription_id: str
    #: This wake; acks and callbacks must name it (a newer wake fences this one).
    wake_id: str
    #: Grows with each wake of the subscription.
    generation: Annotated[int, pydantic.Field(ge=0, strict=True)]
    #: The linked streams, each with its ``acked_offset`` and the ``tail_offset`` at wake time.
    streams: tuple[ClaimedStream, ...]
    #: Where to POST acks after replying (the ack-later style).
    callback_url: str
    #: The bearer token for ``callback_url``.
    callback_token: pydantic.SecretStr

    @property
    def pending_streams(self) -> tuple[ClaimedStream, ...]:
        """The streams with data past their acknowledged offset."""
        return tuple(stream for stream in self.streams if stream.has_pending)

    def tail_acks(self) -> list[StreamAck]:
        """Acks of every pending stream up to its tail at wake time (what ``done`` acks)."""
        return [StreamAck(stream=s.path, offset=s.tail_offset) for s in self.pending_streams]

    async def ack(
        self, subs: SubscriptionClient, acks: Iterable[StreamAck] = (), *, done: bool = True
    ) -> AckResult:
        """Acknowledge this wake later, through its callback URL (the ack-later style).

        ``acks`` move each stream's acknowledged offset (inclusive: the
        ``Stream-Next-Offset`` reached); ``done=True`` ends the wake, ``done=False``
        reports progress and extends the lease. The request is
        :meth:`SubscriptionClient.ack_callback`'s; a newer wake makes it a
        :class:`~durable_streams.FencedError`. Example::

            await wake.ack(subs, wake.tail_acks())
        """
        return await subs.ack_callback(
            self.callback_url,
            self.callback_token,
            wake_id=self.wake_id,
            generation=self.generation,
            acks=acks,
            done=done,
        )


def _reject(message: str, reason: str) -> WebhookVerificationError:
    return WebhookVerificationError(f"webhook rejected: {message}", reason=reason)


def signature_header(headers: Headers) -> str:
    """The one ``Webhook-Signature`` value of ``headers``; missing or repeated is malformed."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: list[str] = []
    for name, value in items:
        text_name = name.decode("latin-1") if isinstance(name, bytes) else name
        if text_name.lower() == SIGNATURE_HEADER:
            if isinstance(value, bytes):
                found.append(value.decode("latin-1"))
            else:
                found.append(value)
    if not found:
        raise _reject("no Webhook-Signature header", "malformed")
    if len(found) > 1:
        raise _reject("more than one Webhook-Signature header", "malformed")
    return found[0]


def parse_signature(value: str) -> tuple[str, str, bytes]:
    """``(t, kid, signature)`` of a ``t=<digits>,kid=<id>,ed25519=<base64url>`` value.

    Strict: exactly these three parts, each once, no spaces, ``t`` plain digits,
    the signature the canonical unpadded base64url of 64 bytes.
    """
    if len(value) > MAX_SIGNATURE_HEADER:
        raise _reject("Webhook-Signature header too long", "malformed")
    parts: dict[str, str] = {}
    for part in value.strip().split(","):
        name, equals, content = part.partition("=")
        if not equals or name not in ("t", "kid", "ed25519"):
            raise _reject("Webhook-Signature has an unknown or unnamed part", "malformed")
        if name in parts:
            raise _reject(f"Webhook-Signature repeats {name!r}", "malformed")
        parts[name] = content
    missing = [name for name in ("t", "kid", "ed25519") if name not in parts]
    if missing:
        raise _reject(f"Webhook-Signature lacks {', '.join(missing)}", "malformed")
    if not _DIGITS.fullmatch(parts["t"]):
        raise _reject("Webhook-Signature t is not a unix time in seconds", "malformed")
    if not _KID.fullmatch(parts["kid"]):
        raise _reject("Webhook-Signature kid is not a key id", "malformed")
    signature = decode_base64url(parts["ed25519"], _SIGNATURE_BYTES)
    if signature is None:
        raise _reject(
            "Webhook-Signature ed25519 is not the unpadded base64url of 64 bytes", "malformed"
        )
    return parts["t"], parts["kid"], signature


async def verify(
    headers: Headers,
    body: bytes,
    *,
    subscription_id: str,
    keys: JwksCache,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_body_bytes: int = MAX_WEBHOOK_BODY,
) -> WebhookNotification:
    """Check a webhook request (§7) and return its wake, or raise ``WebhookVerificationError``.

    ``body`` must be the raw bytes received (not re-serialized JSON). The checks,
    in order, and the error's ``reason`` when one fails: the header and body size
    (``"malformed"``), ``|now - t| <= tolerance`` (``"timestamp"``), the ``kid`` in
    the server's JWKS, refetched once if unknown (``"unknown_key"``), the Ed25519
    signature over ``t + "." + body`` (``"signature"``), the body parsed only after
    that (``"malformed"``), and its ``subscription_id`` (``"subscription"``). A JWKS
    that cannot be fetched raises the fetch's typed error instead (answer 5xx: the
    server retries). Messages never include the signature, the body or the token.

    Example::

        keys = JwksCache(f"{root}/__ds/jwks.json")
        wake = await verify(request.headers, await request.body(),
                            subscription_id="orders", keys=keys)
    """
    if not tolerance >= 0:
        raise InvalidArgumentError("tolerance must be a number of seconds >= 0", field="tolerance")
    if len(body) > max_body_bytes:
        raise _reject(f"body larger than {max_body_bytes} bytes", "malformed")
    t, kid, signature = parse_signature(signature_header(headers))
    current = time.time() if now is None else now
    if abs(current - int(t)) > tolerance:
        raise _reject(
            f"timestamp is {current - int(t):+.0f} s from now (tolerance {tolerance:g} s)",
            "timestamp",
        )
    key = await keys.key(kid)
    if not signature_holds(key, signature, t.encode("ascii") + b"." + body):
        raise _reject("signature does not match", "signature")
    notification: WebhookNotification | None = None
    with contextlib.suppress(pydantic.ValidationError):
        notification = WebhookNotification.model_validate_json(body)
    if notification is None:  # raised out here: no exception chain leads back to the body
        raise _reject("signed body is not a wake notification", "malformed")
    expected = subscription_id.encode("utf-8")
    if not hmac.compare_digest(notification.subscription_id.encode("utf-8"), expected):
        raise _reject("notification is for another subscription", "subscription")
    return notification
