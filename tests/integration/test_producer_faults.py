"""Exactly-once under faults: dropped connections, 5xx, 429, timeouts and lost responses.

Pushes 20,000 messages through a pipelining producer while the reference
server injects faults on the stream path, then reads the stream back: exactly
the messages sent, each once, in order. The server's faults all strike before
a request is applied, so a small loopback proxy adds the harder case: the
request is applied and its response is lost.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from durable_streams import IdempotentProducer, RetryPolicy, StreamHandle
from tests.server.harness import ReferenceServer

pytestmark = pytest.mark.anyio

MESSAGES = 20_000
#: Server-side faults, one per phase; None = the proxy loses responses instead.
PHASES: list[dict[str, Any] | None] = [
    {"dropConnection": True},
    {"status": 500},
    None,
    {"status": 503},
    {"status": 429, "retryAfter": 0},
    {"delayMs": 400},  # longer than the client's read timeout
    None,
    {"dropConnection": True},
    {"status": 500},
    {"status": 503},
]


_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError)


class LosingProxy:
    """A TCP proxy that, while ``lose`` is set, drops the connection instead of
    forwarding a response (so the server applied the request, the client never hears)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lose = 0.0
        self.lost = 0
        self.random = random.Random(7)

    async def serve(self, client: SocketStream) -> None:
        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", self.upstream_port) as upstream,
            anyio.create_task_group() as pump,
        ):

            async def forward_requests() -> None:
                with suppress(*_BROKEN):
                    async for chunk in client:
                        await upstream.send(chunk)
                pump.cancel_scope.cancel()

            pump.start_soon(forward_requests)
            # Either side may reset its connection (the server's dropConnection fault, or
            # the client giving up on a slow response): that ends this pair, not the proxy.
            with suppress(*_BROKEN):
                async for chunk in upstream:
                    if self.lose and self.random.random() < self.lose:
                        self.lost += 1
                        break
                    await client.send(chunk)
            pump.cancel_scope.cancel()


@asynccontextmanager
async def losing_proxy(server_url: str) -> AsyncIterator[tuple[LosingProxy, int]]:
    proxy = LosingProxy(httpx.URL(server_url).port or 80)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, proxy.serve)
        yield proxy, port
        tasks.cancel_scope.cancel()


async def read_all_json(url: str) -> list[Any]:
    items: list[Any] = []
    offset = "-1"
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(url, params={"offset": offset})
            assert response.status_code == 200
            items.extend(json.loads(response.content))
            offset = response.headers["stream-next-offset"]
            if "stream-up-to-date" in response.headers:
                return items


@pytest.mark.sockets  # a TCP proxy between the producer and the server loses responses
async def test_exactly_once_through_injected_faults(
    stream_url: str, faults: ReferenceServer
) -> None:
    policy = RetryPolicy(initial_delay=0.001, max_delay=0.02, max_attempts=None, max_elapsed=60)
    timeout = httpx.Timeout(10.0, read=0.2)
    per_phase = MESSAGES // len(PHASES)
    async with losing_proxy(faults.url) as (proxy, port):
        proxied = httpx.URL(stream_url).copy_with(port=port)
        async with StreamHandle(str(proxied), timeout=timeout) as handle:
            await handle.create(content_type="application/json")
            await _produce(handle, faults, proxy, policy, per_phase)
        assert proxy.lost > 0
    assert await read_all_json(stream_url) == [{"n": n} for n in range(MESSAGES)]


async def _produce(
    handle: StreamHandle,
    faults: ReferenceServer,
    proxy: LosingProxy,
    policy: RetryPolicy,
    per_phase: int,
) -> None:
    async with IdempotentProducer(
        handle, "fault-test", max_in_flight=5, max_batch_items=50, retry=policy
    ) as producer:
        first_epoch = producer.epoch
        with anyio.fail_after(60):
            for phase, fault in enumerate(PHASES):
                faults.clear_faults()
                proxy.lose = 0.0
                if fault is None:
                    proxy.lose = 0.3
                else:
                    probability = 0.15 if "delayMs" in fault else 0.3
                    faults.inject_fault(
                        handle.url,
                        method="POST",
                        probability=probability,
                        count=10**6,
                        **fault,
                    )
                start = phase * per_phase
                for n in range(start, start + per_phase):
                    producer.append({"n": n})
                await producer.flush()
            faults.clear_faults()
            proxy.lose = 0.0
        assert producer.stats.acked_messages == MESSAGES
        assert producer.stats.failed_batches == 0
        assert producer.stats.retries > 0
        assert producer.stats.duplicate_batches > 0  # lost responses were retried
        assert producer.epoch == first_epoch
        assert producer.stats.identity_conflicts == 0
        stats = producer.stats
        assert stats.stored_messages + stats.duplicate_messages == MESSAGES


async def test_groups_stay_whole_and_exactly_once_through_faults(
    stream_url: str, faults: ReferenceServer
) -> None:
    """Transactions written with append_many under 5xx and dropped connections: each is
    stored once, its messages side by side (one batch each), singles interleaved."""
    rng = random.Random(11)
    policy = RetryPolicy(initial_delay=0.001, max_delay=0.02, max_attempts=None, max_elapsed=60)
    expected: list[dict[str, int]] = []
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        faults.inject_fault(handle.url, method="POST", probability=0.3, count=10**6, status=503)
        async with IdempotentProducer(
            handle, "groups", max_batch_bytes=400, max_in_flight=4, retry=policy
        ) as producer:
            with anyio.fail_after(60):
                for tx in range(300):
                    if tx == 150:
                        faults.inject_fault(
                            handle.url,
                            method="POST",
                            probability=0.3,
                            count=10**6,
                            dropConnection=True,
                        )
                    group = [{"tx": tx, "i": i} for i in range(rng.randint(1, 12))]
                    producer.append_many(group)
                    single = {"tx": -1, "i": tx}
                    producer.append(single)
                    expected.extend([*group, single])
                    if tx % 20 == 19:
                        await producer.flush()
                await producer.flush()
        faults.clear_faults()
        assert producer.stats.retries > 0
    stored = await read_all_json(stream_url)
    assert stored == expected  # each once, in order: every group contiguous
