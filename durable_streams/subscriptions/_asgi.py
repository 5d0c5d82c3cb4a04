"""WebhookReceiver: an ASGI app that verifies webhooks, runs your handler and acks.

Mount it in Starlette or FastAPI (``Route(path, receiver, methods=["POST"])`` or
``app.mount(path, receiver)``), or serve it alone with uvicorn. What it answers:

- 200 ``{"done": false}`` after the handler returned ``None`` or ``WakeReply.DONE``
  and the receiver acked every stream up to the wake's ``tail_offset`` through the
  wake's callback URL (fenced: it names the wake); also when that ack was FENCED
  (a newer wake owns the work; logged at WARNING).
- 200 ``{"done": false}``: the handler returned ``WakeReply.CALLBACK``: the
  application acks (or already acked) through the wake's callback URL, before the
  lease runs out.
- 401 ``{"error": {"code": "WEBHOOK_REJECTED", "reason": ...}}``: verification failed.
- 503: the signing keys could not be fetched, or the done ack failed (other than
  FENCED); 500: the handler raised. The server retries them later (1 s, doubling to
  60 s).
- 405 for other methods, 413 for a body past ``max_body_bytes``.

It never answers ``{"done": true}``: the reference server applies that reply to
whichever wake it holds when the reply arrives, without checking which wake it
answers, so a handler that outlived its lease would ack the next wake's data,
which no handler processed.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

from durable_streams._errors import (
    DurableStreamError,
    FencedError,
    InvalidArgumentError,
    WebhookVerificationError,
)

from ._client import SubscriptionClient
from ._jwks import JwksCache
from ._webhook import DEFAULT_TOLERANCE, MAX_WEBHOOK_BODY, WebhookNotification, verify

__all__ = ["WakeReply", "WebhookHandler", "WebhookReceiver"]

logger = logging.getLogger("durable_streams.subscriptions")

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


class WakeReply(enum.Enum):
    """What a webhook handler tells the receiver to answer.

    ``DONE`` (or returning ``None``): the receiver acks every stream up to the
    ``tail_offset`` of the wake through the wake's callback URL (fenced: a wake
    taken over meanwhile acks nothing), then answers ``{"done": false}``.
    ``CALLBACK``: the receiver only answers ``{"done": false}``; acks go through the
    callback URL (:meth:`WebhookNotification.ack`), later or already during the
    handler.

    Example::

        async def on_wake(wake: WebhookNotification) -> WakeReply:
            jobs.send_nowait(wake)  # a worker processes it and calls wake.ack(subs, ...)
            return WakeReply.CALLBACK
    """

    #: The work is done: the receiver acks the wake's tails through the callback URL.
    DONE = "done"
    #: Answer ``{"done": false}``: the application acks through the callback URL.
    CALLBACK = "callback"


WebhookHandler: TypeAlias = Callable[[WebhookNotification], Awaitable[WakeReply | None]]
"""``async def handler(wake) -> WakeReply | None`` (``None`` means ``WakeReply.DONE``)."""


class WebhookReceiver:
    """An ASGI 3 app receiving one subscription's webhooks (§7).

    Each POST is verified (:func:`verify`: signature, timestamp, key, subscription),
    then ``handler`` runs with the :class:`WebhookNotification`; its return value
    picks the acknowledgement (:class:`WakeReply`). ``subscriptions`` sends the
    done acks (:meth:`SubscriptionClient.ack_callback`: its HTTP client, headers and
    retries); use it from the receiver's event loop. Rejections are logged (reason
    only) on the ``durable_streams.subscriptions`` logger; nothing of the request is
    echoed back. Example (FastAPI or Starlette)::

        subs = SubscriptionClient(root)
        keys = JwksCache(f"{root}/__ds/jwks.json")

        async def on_wake(wake: WebhookNotification) -> None:
            for stream in wake.pending_streams:
                ...  # read stream.path from stream.acked_offset

        receiver = WebhookReceiver(
            on_wake, subscriptions=subs, subscription_id="orders", keys=keys
        )
        app.mount("/hooks/orders", receiver)
    """

    def __init__(
        self,
        handler: WebhookHandler,
        *,
        subscriptions: SubscriptionClient,
        subscription_id: str,
        keys: JwksCache,
        tolerance: float = DEFAULT_TOLERANCE,
        max_body_bytes: int = MAX_WEBHOOK_BODY,
    ) -> None:
        if not isinstance(subscriptions, SubscriptionClient):
            raise InvalidArgumentError(
                "subscriptions must be a SubscriptionClient", field="subscriptions"
            )
        if not subscription_id:
            raise InvalidArgumentError("subscription_id must not be empty", field="subscription_id")
        if not tolerance >= 0:
            raise InvalidArgumentError("tolerance must be >= 0 seconds", field="tolerance")
        if max_body_bytes <= 0:
            raise InvalidArgumentError("max_body_bytes must be positive", field="max_body_bytes")
        self.handler = handler
        self.subscriptions = subscriptions
        self.subscription_id = subscription_id
        self.keys = keys
        self.tolerance = tolerance
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"WebhookReceiver(subscription_id={self.subscription_id!r}, keys={self.keys!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets: not ours; closing the connection refuses it
        if scope["method"] != "POST":
            await _reply(send, 405, {"error": {"code": "METHOD_NOT_ALLOWED"}}, allow="POST")
            return
        body = await self._read_body(receive)
        if body is None:
            await _reply(send, 413, {"error": {"code": "PAYLOAD_TOO_LARGE"}})
            return
        status, document = await self._answer(scope["headers"], body)
        await _reply(send, status, document)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The request body, or None once it passes ``max_body_bytes`` (the rest is not read)."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return bytes(body)  # disconnected: verification fails on what came
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return bytes(body)

    async def _answer(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, Any]:
        try:
            wake = await verify(
                headers,
                body,
                subscription_id=self.subscription_id,
                keys=self.keys,
                tolerance=self.tolerance,
                max_body_bytes=self.max_body_bytes,
            )
        except WebhookVerificationError as exc:
            logger.warning("webhook rejected (%s): %s", exc.reason, exc.message)
            # The code and reason only: the message names the key, the JWKS URL, the skew.
            return 401, {"error": {"code": exc.code, "reason": exc.reason}}
        except DurableStreamError as exc:
            logger.warning("webhook not verified, signing keys unavailable: %s", exc)
            return 503, {"error": {"code": "KEYS_UNAVAILABLE"}}
        try:
            reply = await self.handler(wake)
        except Exception:
            logger.exception(
                "webhook handler failed (wake %s, generation %d); the server will retry",
                wake.wake_id,
                wake.generation,
            )
            return 500, {"error": {"code": "HANDLER_FAILED"}}
        outcome: object = reply  # checked at run time too: handlers are not always typed
        if outcome is None or outcome is WakeReply.DONE:
            return await self._ack_done(wake)
        if outcome is WakeReply.CALLBACK:
            return 200, {"done": False}
        logger.error("webhook handler returned %r, not a WakeReply or None", type(outcome))
        return 500, {"error": {"code": "HANDLER_FAILED"}}

    async def _ack_done(self, wake: WebhookNotification) -> tuple[int, Any]:
        """Ack the wake's tails through its (fenced) callback; the reply never acks."""
        try:
            await wake.ack(self.subscriptions, wake.tail_acks(), done=True)
        except FencedError:
            logger.warning(
                "wake %s (generation %d) of subscription %s was taken over by a newer wake "
                "before its handler finished (longer than the lease): not acked, the newer "
                "wake delivers the work again",
                wake.wake_id,
                wake.generation,
                self.subscription_id,
            )
        except DurableStreamError as exc:
            logger.warning(
                "acking wake %s (generation %d) of subscription %s failed; the server will "
                "deliver it again: %s",
                wake.wake_id,
                wake.generation,
                self.subscription_id,
                exc,
            )
            return 503, {"error": {"code": "ACK_FAILED"}}
        return 200, {"done": False}


async def _reply(send: Send, status: int, document: Any, *, allow: str | None = None) -> None:
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served alone (``uvicorn module:receiver``): nothing to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
