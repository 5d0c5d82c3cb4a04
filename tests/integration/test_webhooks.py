"""Webhook subscriptions against the reference server: a WebhookReceiver under uvicorn.

The reference server signs each wake and POSTs it to the receiver (uvicorn in a
thread, on 127.0.0.1 port 0); the receiver verifies it with the server's JWKS and
runs a handler that hands the wake to the test through a blocking portal (the
test may run on trio; uvicorn runs on asyncio in its thread). Then acks are
checked on the server: the ``{"done": true}`` reply, the callback URL, fencing of
a stale wake, and forged/replayed/tampered/unknown-kid requests sent straight to
the receiver get 401 with the right reason. The FastAPI example runs here too.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from durable_streams import FencedError, StreamHandle
from durable_streams.subscriptions import (
    JwksCache,
    SubscriptionClient,
    SubscriptionConfig,
    WakeReply,
    WebhookConfig,
    WebhookNotification,
    WebhookReceiver,
)
from tests.conftest import ServerTarget
from tests.subscriptions.signing import b64url

pytestmark = [pytest.mark.anyio, pytest.mark.subscriptions, pytest.mark.sockets]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT = 5.0  # seconds any one wake may take to arrive


class Uvicorn:
    """An ASGI app served by uvicorn in a thread, on a socket bound before it starts."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)  # connections wait in the backlog until uvicorn accepts
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(
            app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    async def __aenter__(self) -> Uvicorn:
        self.thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        # Joined from a worker thread: a handler still running in uvicorn's thread may
        # need this event loop (the portal) to finish.
        await anyio.to_thread.run_sync(self.thread.join, 10)
        self.socket.close()
        assert not self.thread.is_alive()


class Capture:
    """ASGI middleware keeping the raw headers and body of the last request (for replays)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.headers, self.body = list(scope["headers"]), b"".join(chunks)
        replayed = False

        async def once() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return {"type": "http.disconnect"}
            replayed = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        await self.app(scope, once, send)


Replies = Callable[[WebhookNotification], WakeReply]


@asynccontextmanager
async def receiving(
    subscription_id: str, jwks_url: str, reply: Replies
) -> AsyncIterator[tuple[str, MemoryObjectReceiveStream[WebhookNotification], Capture]]:
    """A receiver under uvicorn whose handler sends each wake to the test, and replies."""
    send, receive = anyio.create_memory_object_stream[WebhookNotification](100)
    async with anyio.from_thread.BlockingPortal() as portal:

        async def handler(wake: WebhookNotification) -> WakeReply:
            portal.start_task_soon(send.send, wake)
            return reply(wake)

        receiver = WebhookReceiver(
            handler, subscription_id=subscription_id, keys=JwksCache(jwks_url)
        )
        capture = Capture(receiver)
        with send, receive:
            async with Uvicorn(capture) as server:
                yield server.url, receive, capture


async def next_wake(wakes: MemoryObjectReceiveStream[WebhookNotification]) -> WebhookNotification:
    with anyio.fail_after(WAIT):
        return await wakes.receive()


async def append(handle: StreamHandle, item: Any) -> str:
    """Append ``item``; the stream's new tail."""
    tail = (await handle.append(item)).next_offset
    assert tail is not None
    return tail


def names() -> tuple[str, str]:
    unique = uuid.uuid4().hex[:12]
    return f"hooks-{unique}", f"wh/{unique}/orders"


async def test_wakes_are_acked_by_the_done_reply_and_through_the_callback(
    server: ServerTarget,
) -> None:
    subscription_id, path = names()
    replies = iter([WakeReply.DONE, WakeReply.CALLBACK])
    async with SubscriptionClient(f"{server.url}/v1/stream") as subs:
        orders = subs.handle(path)
        await orders.create(content_type="application/json")
        jwks_url = f"{server.url}/v1/stream/__ds/jwks.json"
        async with receiving(subscription_id, jwks_url, lambda _: next(replies)) as (
            url,
            wakes,
            _,
        ):
            config = SubscriptionConfig(
                type="webhook", streams=(path,), webhook=WebhookConfig(url=f"{url}/hook")
            )
            created = await subs.create(subscription_id, config)
            assert created.subscription.webhook is not None
            assert created.subscription.webhook.signing is not None
            assert created.subscription.webhook.signing.jwks_url == jwks_url

            first_tail = await append(orders, {"id": 1})
            first = await next_wake(wakes)  # answered {"done": true}
            assert first.subscription_id == subscription_id
            [stream] = first.pending_streams
            assert (stream.path, stream.tail_offset) == (path, first_tail)

            # The done reply acked the first wake's tail: the next wake starts there.
            second_tail = await append(orders, {"id": 2})
            second = await next_wake(wakes)  # answered {"done": false}: acked below
            assert second.generation > first.generation
            assert second.wake_id != first.wake_id
            [stream] = second.pending_streams
            assert (stream.acked_offset, stream.tail_offset) == (first_tail, second_tail)

            result = await second.ack(subs, second.tail_acks())
            assert result.ok
            assert result.next_wake is False
            link = (await subs.get(subscription_id)).stream(path)
            assert link is not None
            assert link.acked_offset == second_tail

            # The first wake is over: its callback token is fenced.
            with pytest.raises(FencedError):
                await first.ack(subs, first.tail_acks())
        await subs.delete(subscription_id)


async def test_partial_callback_acks_extend_the_wake_then_done_ends_it(
    server: ServerTarget,
) -> None:
    subscription_id, path = names()
    async with SubscriptionClient(f"{server.url}/v1/stream") as subs:
        orders = subs.handle(path)
        await orders.create(content_type="application/json")
        jwks_url = f"{server.url}/v1/stream/__ds/jwks.json"
        async with receiving(subscription_id, jwks_url, lambda _: WakeReply.CALLBACK) as (
            url,
            wakes,
            _,
        ):
            config = SubscriptionConfig(
                type="webhook", streams=(path,), webhook=WebhookConfig(url=f"{url}/hook")
            )
            await subs.create(subscription_id, config)
            first = await append(orders, {"id": 1})
            tail = await append(orders, {"id": 2})
            wake = await next_wake(wakes)
            [stream] = wake.pending_streams
            # The wake may have been made after the first append or after both.
            assert stream.tail_offset in (first, tail)

            progress = await wake.ack(subs, [wake.tail_acks()[0]], done=False)
            assert progress.next_wake is False
            link = (await subs.get(subscription_id)).stream(path)
            assert link is not None
            assert link.acked_offset == stream.tail_offset

            done = await wake.ack(subs, done=True)
            # Data past the wake's snapshot is left: the server wakes again at once.
            assert done.next_wake is (stream.tail_offset != tail)
        await subs.delete(subscription_id)


async def test_forged_replayed_tampered_and_unknown_key_requests_are_rejected(
    server: ServerTarget,
) -> None:
    subscription_id, path = names()
    async with SubscriptionClient(f"{server.url}/v1/stream") as subs:
        orders = subs.handle(path)
        await orders.create(content_type="application/json")
        jwks_url = f"{server.url}/v1/stream/__ds/jwks.json"
        async with receiving(subscription_id, jwks_url, lambda _: WakeReply.DONE) as (
            url,
            wakes,
            capture,
        ):
            config = SubscriptionConfig(
                type="webhook", streams=(path,), webhook=WebhookConfig(url=f"{url}/hook")
            )
            await subs.create(subscription_id, config)
            await orders.append({"id": 1})
            await next_wake(wakes)  # a genuine wake: captured for the attacks below

            genuine = {k.decode(): v.decode() for k, v in capture.headers}
            header = genuine["webhook-signature"]
            t, kid, signature = (part.partition("=")[2] for part in header.split(","))
            body = capture.body
            now = int(time.time())

            def signed_by(key: Ed25519PrivateKey, kid: str, t: int, body: bytes) -> str:
                return f"t={t},kid={kid},ed25519={b64url(key.sign(f'{t}.'.encode() + body))}"

            attacker = Ed25519PrivateKey.generate()
            attacks = {
                "forged": (signed_by(attacker, kid, now, body), body, "signature"),
                "replayed": (f"t={now - 3600},kid={kid},ed25519={signature}", body, "timestamp"),
                "tampered t": (f"t={int(t) + 1},kid={kid},ed25519={signature}", body, "signature"),
                "tampered body": (
                    header,
                    body.replace(b'"generation"', b'"generation" '),
                    "signature",
                ),
                "wrong kid": (signed_by(attacker, "ds_attacker", now, body), body, "unknown_key"),
                "no header": (None, body, "malformed"),
            }
            async with httpx.AsyncClient() as client:
                replay = await client.post(
                    f"{url}/hook", content=body, headers={"webhook-signature": header}
                )
                assert replay.status_code == 200  # the genuine request, within the tolerance
                for name, (signature_value, content, reason) in attacks.items():
                    headers = {"content-type": "application/json"}
                    if signature_value is not None:
                        headers["webhook-signature"] = signature_value
                    response = await client.post(f"{url}/hook", content=content, headers=headers)
                    assert response.status_code == 401, name
                    error = response.json()["error"]
                    assert (error["code"], error["reason"]) == ("WEBHOOK_REJECTED", reason), name
                    assert signature not in response.text
                    assert "callback_token" not in response.text
        await subs.delete(subscription_id)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_fastapi_example_processes_each_order_once(
    server: ServerTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscription_id, _ = names()
    monkeypatch.setenv("DURABLE_STREAMS_URL", server.url)
    monkeypatch.setenv("SUBSCRIPTION_ID", subscription_id)
    example = load_example("webhook_receiver")
    stream = f"orders/{subscription_id}"  # the example subscribes to orders/*
    processed: list[Any] = []

    def process(path: str, order: Any) -> None:
        if path == stream:  # other tests' orders/* streams are not this test's business
            processed.append(order)

    monkeypatch.setattr(example, "process", process)
    handled, wakes = anyio.create_memory_object_stream[WakeReply](100)
    original: Callable[[WebhookNotification], Awaitable[WakeReply]] = example.receiver.handler

    async with anyio.from_thread.BlockingPortal() as portal:

        async def signalling(wake: WebhookNotification) -> WakeReply:
            reply = await original(wake)  # reads, processes and acks through the callback
            portal.start_task_soon(handled.send, reply)
            return reply

        example.receiver.handler = signalling
        with handled, wakes:
            async with Uvicorn(example.app) as service:
                async with httpx.AsyncClient() as client:
                    assert (await client.get(f"{service.url}/health")).json() == {"status": "ok"}
                await example.subscribe(f"{service.url}/webhooks/orders")
                async with SubscriptionClient(f"{server.url}/v1/stream") as subs:
                    handle = subs.handle(stream)
                    await handle.create(content_type="application/json")
                    await append(handle, {"id": 1})
                    tail = await append(handle, {"id": 2})
                    with anyio.fail_after(WAIT):
                        # Signalled after each wake's callback ack: then check what was processed.
                        while await wakes.receive() is WakeReply.CALLBACK:
                            if processed == [{"id": 1}, {"id": 2}]:
                                break
                    link = (await subs.get(subscription_id)).stream(stream)
                    assert link is not None
                    assert link.acked_offset == tail
                    tail = await append(handle, {"id": 3})
                    with anyio.fail_after(WAIT):
                        while await wakes.receive() is WakeReply.CALLBACK:
                            if len(processed) >= 3:
                                break
                    assert processed == [{"id": 1}, {"id": 2}, {"id": 3}]  # each once, in order
                    link = (await subs.get(subscription_id)).stream(stream)
                    assert link is not None
                    assert link.acked_offset == tail
                    await subs.delete(subscription_id)
