"""Reads against a misbehaving reference server (fault injection) and a meddling network.

Server-side faults come from the reference server's ``/_test/inject-error``.
Cuts the server cannot make (a body dropped half-way, an SSE connection ended
after a control event, a proxy that ends SSE at once) are made by a wrapping
httpx transport that forwards every request to the real server and shortens
its response. Every case ends in transparent recovery with exact data or in a
typed error — never in wrong data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from durable_streams import (
    Batch,
    DurableStreamError,
    LiveMode,
    ParseError,
    RetryPolicy,
    StreamHandle,
    StreamResponse,
)
from tests.server.harness import ReferenceServer

pytestmark = pytest.mark.anyio

JSON = "application/json"
BINARY = "application/octet-stream"
# A Retry-After above max_retry_after fails at once, so the cap admits the 1 s the 429 asks.
FAST = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_retry_after=1.0, max_attempts=5)


@dataclass
class Cut:
    """How to shorten one response: after some body bytes or SSE control events."""

    after_bytes: int | None = None
    after_controls: int | None = None
    drop: bool = False  # end with a connection error instead of a clean end


class CutStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, cut: Cut) -> None:
        self.inner = inner
        self.cut = cut

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = b""
        try:
            async for chunk in self.inner:
                start = len(seen)
                seen += chunk
                end = len(seen)
                if self.cut.after_bytes is not None:
                    end = min(end, self.cut.after_bytes)
                if self.cut.after_controls is not None:
                    end = min(end, _end_of_control(seen, self.cut.after_controls) or end)
                if end > start:
                    yield seen[start:end]
                if end < len(seen) or (
                    self.cut.after_bytes is not None and end >= self.cut.after_bytes
                ):
                    break
                if (
                    self.cut.after_controls is not None
                    and _end_of_control(seen, self.cut.after_controls) is not None
                ):
                    break
        finally:
            await self.inner.aclose()
        if self.cut.drop:
            raise httpx.ReadError("connection dropped by the test network")

    async def aclose(self) -> None:
        await self.inner.aclose()


def _end_of_control(data: bytes, count: int) -> int | None:
    """Index just past the ``count``-th complete control event, if there is one."""
    position = 0
    for _ in range(count):
        start = data.find(b"event: control", position)
        if start < 0:
            return None
        end = data.find(b"\n\n", start)
        if end < 0:
            return None
        position = end + 2
    return position


class MeddlingNetwork(httpx.AsyncBaseTransport):
    """Forwards to the real server; ``rule(request)`` may return a :class:`Cut`."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.rule: Callable[[httpx.Request], Cut | None] = lambda request: None
        self.requests: list[httpx.Request] = []
        self._changed = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self._changed.set()
        self._changed = anyio.Event()
        response = await self.inner.handle_async_request(request)
        cut = self.rule(request)
        if cut is None:
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=CutStream(response.stream, cut),
            extensions=response.extensions,
        )

    async def wait_for(self, predicate: Callable[[list[httpx.Request]], bool]) -> None:
        while not predicate(self.requests):
            await self._changed.wait()

    def lives(self) -> list[str | None]:
        return [r.url.params.get("live") for r in self.requests if r.method == "GET"]

    async def aclose(self) -> None:
        await self.inner.aclose()


def sse_requests(requests: list[httpx.Request]) -> int:
    return sum(r.url.params.get("live") == "sse" for r in requests)


def sse_at_least(count: int) -> Callable[[list[httpx.Request]], bool]:
    return lambda requests: sse_requests(requests) >= count


@pytest.fixture
async def network() -> AsyncIterator[tuple[httpx.AsyncClient, MeddlingNetwork]]:
    meddling = MeddlingNetwork()
    async with httpx.AsyncClient(transport=meddling, timeout=10.0) as client:
        yield client, meddling


async def writer_for(url: str, content_type: str, items: list[Any]) -> StreamHandle:
    writer = StreamHandle(url, retry=FAST)
    await writer.create(content_type=content_type)
    for item in items:
        await writer.append(item)
    return writer


async def drain(
    res: StreamResponse,
    into: list[Batch],
    after_first: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Read ``res`` to its end into ``into``; ``after_first`` runs once the first batch is in."""
    async for batch in res:
        into.append(batch)
        if len(into) == 1 and after_first is not None:
            await after_first()


def items_of(batches: list[Batch]) -> list[Any]:
    return [item for batch in batches for item in batch.items]


# -- injected statuses and drops ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429, "retryAfter": 1},
        {"dropConnection": True},
    ],
    ids=["500", "503", "429", "drop"],
)
@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_failures_mid_read_recover_with_exact_data(
    stream_url: str, faults: ReferenceServer, live: LiveMode, fault: dict[str, Any]
) -> None:
    writer = await writer_for(stream_url, JSON, [{"n": 0}])
    seen: list[DurableStreamError] = []
    batches: list[Batch] = []
    async with writer, StreamHandle(stream_url, retry=FAST) as reader:
        with anyio.fail_after(10):
            async with reader.stream(live=live, on_error=seen.append) as res:
                async for batch in res:
                    batches.append(batch)
                    if len(batches) == 1:
                        # The next two reads fail; meanwhile the stream grows and closes.
                        faults.inject_fault(stream_url, method="GET", count=2, **fault)
                        await writer.append({"n": 1})
                        await writer.append({"n": 2})
                        await writer.close()
    assert items_of(batches) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert res.closed
    assert len(seen) == 2
    assert all(error.code in ("UNEXPECTED_STATUS", "NETWORK_ERROR") for error in seen)


async def test_first_request_failures_recover_on_await(
    stream_url: str, faults: ReferenceServer
) -> None:
    writer = await writer_for(stream_url, JSON, [{"n": 0}, {"n": 1}])
    async with writer, StreamHandle(stream_url, retry=FAST) as reader:
        faults.inject_fault(stream_url, method="GET", count=3, status=503)
        with anyio.fail_after(10):
            res = await reader.stream()
            assert await res.json() == [{"n": 0}, {"n": 1}]


@pytest.mark.parametrize("fault", [{"truncateBodyBytes": 7}, {"corruptBody": True}])
@pytest.mark.parametrize("live", [False, "long-poll"])
async def test_truncated_or_corrupt_json_is_a_parse_error_never_wrong_data(
    stream_url: str, faults: ReferenceServer, live: Any, fault: dict[str, Any]
) -> None:
    writer = await writer_for(stream_url, JSON, [{"n": 0}, {"n": 1}])
    batches: list[Batch] = []
    async with writer, StreamHandle(stream_url, retry=FAST) as reader:
        with anyio.fail_after(10):
            if live is False:
                faults.inject_fault(stream_url, method="GET", **fault)
            res = await reader.stream(live=live)
            start = res.offset

            async def after_first() -> None:
                faults.inject_fault(stream_url, method="GET", **fault)
                await writer.append({"n": 2})

            with pytest.raises(ParseError) as caught:
                await drain(res, batches, after_first)
    assert items_of(batches) in ([], [{"n": 0}, {"n": 1}])
    # The error names the offset the bad body was read from; nothing past it was handed out.
    assert caught.value.offset == (start if not batches else batches[-1].offset)
    assert res.offset == caught.value.offset


async def test_corrupt_sse_control_is_a_parse_error(
    stream_url: str, faults: ReferenceServer
) -> None:
    writer = await writer_for(stream_url, JSON, [{"n": 0}])
    async with writer, StreamHandle(stream_url, retry=FAST) as reader:
        faults.inject_fault(
            stream_url,
            method="GET",
            injectSseEvent={"eventType": "control", "data": '{"streamNextOffset": '},
        )
        with anyio.fail_after(10):
            res = await reader.stream(offset="now", live="sse")
            with pytest.raises(ParseError):
                await drain(res, [])


# -- cuts the server cannot make ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["batches", "iter_bytes"])
async def test_body_dropped_half_way_resumes_with_exact_bytes(
    stream_url: str, network: tuple[httpx.AsyncClient, MeddlingNetwork], how: str
) -> None:
    client, meddling = network
    payload = bytes(range(256)) * 3  # under the server's 1 KiB compression threshold
    writer = await writer_for(stream_url, BINARY, [payload[:300], payload[300:]])
    cuts = [Cut(after_bytes=200, drop=True)]
    meddling.rule = lambda request: cuts.pop() if cuts and request.method == "GET" else None
    async with writer, StreamHandle(stream_url, client=client, retry=FAST) as reader:
        with anyio.fail_after(10):
            res = await reader.stream()
            if how == "batches":
                data = b"".join([batch.data async for batch in res])
            else:
                data = b"".join([chunk async for chunk in res.iter_bytes()])
    assert data == payload
    assert not cuts
    assert meddling.lives() == [None, None]  # same catch-up request, retried


@pytest.mark.whole_responses  # one 2.2 MB response, dropped after 1.6 MB
async def test_large_json_body_dropped_half_way_resumes_with_exact_items(
    stream_url: str, network: tuple[httpx.AsyncClient, MeddlingNetwork]
) -> None:
    client, meddling = network
    items = [{"n": n, "text": f"item {n}, [a] {{b}}"} for n in range(60_000)]  # ~2.2 MB
    writer = await writer_for(stream_url, JSON, [])
    for start in range(0, len(items), 15_000):
        await writer.append_many(items[start : start + 15_000])
    cuts = [Cut(after_bytes=1_600_000, drop=True)]
    meddling.rule = lambda request: cuts.pop() if cuts and request.method == "GET" else None
    received: list[Any] = []
    reads_at_first_item = 0
    identity = {"accept-encoding": "identity"}  # cut the JSON itself, not a gzip of it
    reader = StreamHandle(stream_url, client=client, retry=FAST, headers=identity)
    async with writer, reader:
        with anyio.fail_after(20):
            res = await reader.stream()
            async for item in res.iter_json():
                if not received:
                    reads_at_first_item = len(meddling.lives())
                received.append(item)
        tail = (await writer.head()).next_offset
    assert received == items
    assert reads_at_first_item == 1  # items came out of the body that was then dropped
    assert meddling.lives() == [None, None]  # same catch-up request, retried
    assert res.offset == tail


async def test_sse_reconnects_after_the_server_ends_the_connection(
    stream_url: str, network: tuple[httpx.AsyncClient, MeddlingNetwork]
) -> None:
    client, meddling = network
    writer = await writer_for(stream_url, JSON, [{"n": 0}])
    # Each SSE connection ends after its second control event: the first says "up to
    # date" at once, the second carries the append made while the connection was open.
    meddling.rule = lambda request: (
        Cut(after_controls=2) if request.url.params.get("live") == "sse" else None
    )
    batches: list[Batch] = []
    async with writer, StreamHandle(stream_url, client=client, retry=FAST) as reader:

        async def write() -> None:
            for n in (1, 2):
                await meddling.wait_for(sse_at_least(n))
                await writer.append({"n": n})
            await meddling.wait_for(sse_at_least(3))
            await writer.close()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # The writer runs while the first request waits (awaiting stream() sends it).
                tg.start_soon(write)
                async with reader.stream(live="sse") as res:
                    batches = [batch async for batch in res]
    assert items_of(batches) == [{"n": 0}, {"n": 1}, {"n": 2}]
    sse = [r for r in meddling.requests if r.url.params.get("live") == "sse"]
    # Every reconnect resumes at the previous connection's last control offset, with its cursor.
    assert len(sse) == 3
    assert [r.url.params["offset"] for r in sse[1:]] == [b.offset for b in batches[1:3]]
    assert all("cursor" in r.url.params for r in sse[1:])


async def test_auto_mode_falls_back_to_long_poll_behind_a_buffering_proxy(
    stream_url: str, network: tuple[httpx.AsyncClient, MeddlingNetwork]
) -> None:
    client, meddling = network
    writer = await writer_for(stream_url, JSON, [{"n": 0}])
    # A proxy that buffers SSE and ends every connection before anything arrives.
    meddling.rule = lambda request: (
        Cut(after_bytes=0) if request.url.params.get("live") == "sse" else None
    )
    async with writer, StreamHandle(stream_url, client=client, retry=FAST) as reader:

        async def write() -> None:
            await meddling.wait_for(lambda requests: "long-poll" in meddling.lives())
            await writer.append({"n": 1})
            await writer.close()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # The writer runs while the first request waits (awaiting stream() sends it).
                tg.start_soon(write)
                async with reader.stream(live="auto") as res:
                    batches = [batch async for batch in res]
    assert items_of(batches) == [{"n": 0}, {"n": 1}]
    assert res.closed
    lives = meddling.lives()
    assert lives[:4] == [None, "sse", "sse", "sse"]
    assert set(lives[4:]) == {"long-poll"}  # the session never went back to SSE


# -- waiting readers -------------------------------------------------------------------------------


@pytest.mark.parametrize("live", ["long-poll", "sse", "auto"])
async def test_close_while_a_reader_waits_is_eof(
    stream_url: str, network: tuple[httpx.AsyncClient, MeddlingNetwork], live: LiveMode
) -> None:
    client, meddling = network
    writer = await writer_for(stream_url, BINARY, [b"abc"])
    async with writer, StreamHandle(stream_url, client=client) as reader:

        async def close_when_waiting() -> None:
            await meddling.wait_for(lambda requests: meddling.lives()[-1] is not None)
            await writer.close()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # The writer runs while the first request waits (awaiting stream() sends it).
                tg.start_soon(close_when_waiting)
                async with reader.stream(live=live) as res:
                    batches = [batch async for batch in res]
    assert b"".join(b.data for b in batches) == b"abc"
    assert [(b.up_to_date, b.closed) for b in batches] == [(True, False), (True, True)]


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_cancelling_a_waiting_reader_releases_its_connection(
    stream_url: str, live: LiveMode
) -> None:
    writer = await writer_for(stream_url, JSON, [{"n": 0}])
    waiting = anyio.Event()

    async def on_request(request: httpx.Request) -> None:
        if request.url.params.get("live"):
            waiting.set()

    async with (
        writer,
        httpx.AsyncClient(event_hooks={"request": [on_request]}) as client,
        StreamHandle(stream_url, client=client) as reader,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    async for _ in await reader.stream(live=live):
                        pass

                tg.start_soon(read)
                await waiting.wait()
                tg.cancel_scope.cancel()
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert [c for c in pool.connections if not c.is_idle()] == []
        # The client is still usable: the next read works.
        with anyio.fail_after(10):
            assert await (await reader.stream()).json() == [{"n": 0}]
