"""Webhook subscriptions against the reference server: a WebhookReceiver under uvicorn.

The reference server signs each wake and POSTs it to the receiver (uvicorn in a
thread, on 127.0.0.1 port 0); the receiver verifies it with the server's JWKS and
runs a handler that hands the wake to the test through a blocking portal (the
test may run on trio; uvicorn runs on asyncio in its thread). Then acks are
checked on the server: the done acks the receiver makes through the callback URL,
the application's own callback acks, fencing of a stale wake (a handler that
outlived its lease acks nothing of the next wake), and forged/replayed/tampered/
unknown-kid requests sent straight to the receiver get 401 with the right reason.
The FastAPI example runs here too.
"""

from __future__ import annotations

import importlib.util
import json
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
async def receiver_subscriptions(root: str) -> AsyncIterator[SubscriptionClient]:
    """The receiver's SubscriptionClient: used in uvicorn's event loop, closed in the test's.

    No connection is kept alive, so none outlives the loop that opened it.
    """
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield SubscriptionClient(root, client=client)


@asynccontextmanager
async def receiving(
    subscription_id: str, jwks_url: str, reply: Replies
) -> AsyncIterator[tuple[str, MemoryObjectReceiveStream[WebhookNotification], Capture]]:
    """A receiver under uvicorn whose handler sends each wake to the test, and replies."""
    send, receive = anyio.create_memory_object_stream[WebhookNotification](100)
    root = jwks_url.removesuffix("/__ds/jwks.json")
    async with anyio.from_thread.BlockingPortal() as portal, receiver_subscriptions(root) as subs:

        async def handler(wake: WebhookNotification) -> WakeReply:
            portal.start_task_soon(send.send, wake)
            return reply(wake)

        receiver = WebhookReceiver(
            handler, subscriptions=subs, subscription_id=subscription_id, keys=JwksCache(jwks_url)
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
            first = await next_wake(wakes)  # DONE: the receiver acks through the callback
            assert first.subscription_id == subscription_id
            [stream] = first.pending_streams
            assert (stream.path, stream.tail_offset) == (path, first_tail)

            # The receiver acked the first wake's tail: the next wake starts there.
            second_tail = await append(orders, {"id": 2})
            second = await next_wake(wakes)  # CALLBACK: acked below
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


async def test_a_handler_that_outlives_its_lease_acks_nothing_of_the_next_wake(
    server: ServerTarget,
) -> None:
    # The reference server applies a {"done": true} reply to whichever wake it holds
    # when the reply arrives. Wake 1 (item A) is handled slowly: meanwhile B is
    # appended, the 1 s lease ends, and wake 2 (A and B) is delivered and fails. When
    # wake 1's handler then returns DONE, the receiver's fenced callback ack is refused
    # and nothing is acked: B was never processed.
    subscription_id, path = names()
    root = f"{server.url}/v1/stream"
    replies, answered = anyio.create_memory_object_stream[tuple[int, int, Any]](100)
    async with (
        anyio.from_thread.BlockingPortal() as portal,
        receiver_subscriptions(root) as receiver_subs,
        SubscriptionClient(root) as subs,
    ):
        events: dict[str, anyio.Event] = {}  # made and used in uvicorn's event loop

        def later_wake_failed() -> anyio.Event:
            if "failed" not in events:
                events["failed"] = anyio.Event()
            return events["failed"]

        async def on_wake(wake: WebhookNotification) -> WakeReply:
            if wake.generation == 1:
                async with StreamHandle(f"{root}/{path}", content_type="application/json") as h:
                    await h.append({"item": "B"})  # new data while wake 1 is handled
                await later_wake_failed().wait()  # outlive the lease
                return WakeReply.DONE  # handled A only
            later_wake_failed().set()
            raise RuntimeError("handling B failed")

        receiver = WebhookReceiver(
            on_wake,
            subscriptions=receiver_subs,
            subscription_id=subscription_id,
            keys=JwksCache(f"{root}/__ds/jwks.json"),
        )

        async def app(scope: Any, receive: Any, send: Any) -> None:
            """The receiver, telling the test each answer: (generation, status, body)."""
            if scope["type"] != "http":
                await receiver(scope, receive, send)
                return
            chunks: list[bytes] = []
            status = 0

            async def receiving_body() -> Any:
                message = await receive()
                chunks.append(message.get("body", b""))
                return message

            async def answering(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                else:
                    generation = json.loads(b"".join(chunks))["generation"]
                    reply = (generation, status, json.loads(message["body"]))
                    portal.start_task_soon(replies.send, reply)
                await send(message)

            await receiver(scope, receiving_body, answering)

        with replies, answered:
            async with Uvicorn(app) as service:
                orders = subs.handle(path)
                await orders.create(content_type="application/json")
                config = SubscriptionConfig(
                    type="webhook",
                    streams=(path,),
                    webhook=WebhookConfig(url=f"{service.url}/hook"),
                    lease_ttl_ms=1000,
                )
                await subs.create(subscription_id, config)
                link = (await subs.get(subscription_id)).stream(path)
                assert link is not None
                start = link.acked_offset
                await append(orders, {"item": "A"})
                with anyio.fail_after(3 * WAIT):
                    first: tuple[int, int, Any] | None = None
                    while first is None:
                        generation, status, body = await answered.receive()
                        if generation == 1:
                            first = (generation, status, body)
                        else:
                            assert status == 500  # the later wakes fail
                    assert first[1:] == (200, {"done": False})  # never {"done": true}
                    # One more delivery (a retry, or a new wake): by then the server has
                    # long handled the answer to wake 1.
                    generation, status, _ = await answered.receive()
                    assert (generation > 1, status) == (True, 500)
                tail = (await orders.head()).next_offset
                link = (await subs.get(subscription_id)).stream(path)
                assert link is not None
                assert link.acked_offset == start  # neither B nor A: no handler finished them
                assert link.acked_offset != tail
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
