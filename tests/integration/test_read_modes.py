"""Reads against the reference server: every mode x content type.

Catch-up, resume from a stored offset, live appends arriving in order, EOF
(including a close while the reader waits), ``offset="now"`` and 404 — for
JSON, text and binary streams, in every live mode, on asyncio and trio.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import durable_streams
from durable_streams import Batch, NotFoundError, StreamHandle, StreamResponse

pytestmark = pytest.mark.anyio

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"
CONTENT_TYPES = [JSON, TEXT, BINARY]
LIVE_MODES: list[Any] = ["long-poll", "sse", "auto", True]
ALL_MODES: list[Any] = [False, *LIVE_MODES]


def message(content_type: str, n: int) -> Any:
    """The n-th test message: a JSON value, text with a multi-byte character, or raw bytes."""
    if content_type == JSON:
        return {"n": n, "text": f"é{n}"}
    if content_type == TEXT:
        return f"line {n} é\n"
    return bytes([n % 256, 0, 255, 10, 13]) * 3


def content(content_type: str, batches: list[Batch]) -> list[Any]:
    """What a list of batches delivered, comparable to ``message`` values."""
    if content_type == JSON:
        return [item for batch in batches for item in batch.items]
    return [b"".join(batch.data for batch in batches)]


def expected(content_type: str, numbers: range) -> list[Any]:
    if content_type == JSON:
        return [message(JSON, n) for n in numbers]
    parts = [message(content_type, n) for n in numbers]
    return [b"".join(p.encode() if isinstance(p, str) else p for p in parts)]


class LiveRequests:
    """Sets ``waiting`` once the reader has sent a live (long-poll or SSE) request."""

    def __init__(self) -> None:
        self.waiting = anyio.Event()
        self.modes: list[str] = []

    async def __call__(self, request: httpx.Request) -> None:
        mode = request.url.params.get("live")
        if mode is not None:
            self.modes.append(mode)
            self.waiting.set()


@pytest.fixture
async def live_requests() -> AsyncIterator[tuple[httpx.AsyncClient, LiveRequests]]:
    hook = LiveRequests()
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), event_hooks={"request": [hook]}
    ) as client:
        yield client, hook


async def make_stream(url: str, content_type: str, count: int) -> StreamHandle:
    handle = StreamHandle(url)
    await handle.create(content_type=content_type)
    for n in range(count):
        await handle.append(message(content_type, n))
    return handle


async def read_until(res: StreamResponse, condition: Any) -> list[Batch]:
    batches: list[Batch] = []
    async for batch in res:
        batches.append(batch)
        if condition(batches):
            break
    return batches


@pytest.mark.parametrize("live", ALL_MODES)
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
async def test_catch_up_and_resume_from_a_stored_offset(
    stream_url: str, content_type: str, live: Any
) -> None:
    writer = await make_stream(stream_url, content_type, 4)
    async with writer:
        with anyio.fail_after(10):
            async with writer.stream(live=live) as res:
                first = await read_until(res, lambda b: b[-1].up_to_date)
            assert content(content_type, first) == expected(content_type, range(4))
            assert res.offset == first[-1].offset
            assert res.status == 200
            saved = res.offset

            for n in range(4, 7):
                await writer.append(message(content_type, n))
            async with writer.stream(offset=saved, live=live) as res:
                rest = await read_until(res, lambda b: b[-1].up_to_date)
            assert content(content_type, rest) == expected(content_type, range(4, 7))


@pytest.mark.parametrize("live", LIVE_MODES)
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
async def test_live_appends_arrive_in_order_then_eof(
    stream_url: str,
    content_type: str,
    live: Any,
    live_requests: tuple[httpx.AsyncClient, LiveRequests],
) -> None:
    client, hook = live_requests
    writer = await make_stream(stream_url, content_type, 2)
    batches: list[Batch] = []
    async with writer, StreamHandle(stream_url, client=client) as reader:

        async def append_later() -> None:
            await hook.waiting.wait()
            for n in range(2, 5):
                await writer.append(message(content_type, n))
            await writer.close()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                # The writer runs while the first request waits (awaiting stream() sends it).
                tg.start_soon(append_later)
                async with reader.stream(live=live) as res:
                    batches = [batch async for batch in res]
    assert content(content_type, batches) == expected(content_type, range(5))
    assert batches[-1].closed
    assert res.closed
    assert res.up_to_date
    offsets = [b.offset for b in batches]
    assert offsets == sorted(offsets)
    assert hook.modes[0] == ("sse" if live in ("sse", "auto") else "long-poll")


@pytest.mark.whole_responses  # a server that cuts responses may cut a byte message too
@pytest.mark.parametrize("live", ["long-poll", "sse"])
@pytest.mark.parametrize("content_type", [JSON, BINARY])
async def test_a_message_over_16_mib_arrives_whole_in_every_live_mode(
    stream_url: str,
    content_type: str,
    live: Any,
    live_requests: tuple[httpx.AsyncClient, LiveRequests],
) -> None:
    # Servers send one append as one SSE data line (base64 for binary: 4/3 larger).
    client, hook = live_requests
    big: Any = {"text": "é" * (9 << 20)} if content_type == JSON else os.urandom(17 << 20)
    writer = await make_stream(stream_url, content_type, 0)
    async with writer, StreamHandle(stream_url, client=client) as reader:

        async def append_later() -> None:
            await hook.waiting.wait()
            await writer.append(big)
            await writer.close()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(append_later)
                res = await reader.stream(offset="now", live=live)
                if content_type == JSON:
                    received = [item async for item in res.iter_json()]
                else:
                    received = [b"".join([chunk async for chunk in res.iter_bytes()])]
    assert received == [big]
    assert hook.modes[0] == live


@pytest.mark.parametrize("live", ALL_MODES)
@pytest.mark.parametrize("content_type", [JSON, BINARY])
async def test_a_closed_stream_ends_every_mode_without_a_request_loop(
    stream_url: str,
    content_type: str,
    live: Any,
    live_requests: tuple[httpx.AsyncClient, LiveRequests],
) -> None:
    client, hook = live_requests
    writer = await make_stream(stream_url, content_type, 2)
    async with writer, StreamHandle(stream_url, client=client) as reader:
        await writer.close()
        with anyio.fail_after(10):
            res = await reader.stream(live=live)
            batches = [batch async for batch in res]
            # EOF at the tail too: one request, straight to the closed end.
            tail = await reader.stream(offset=res.offset, live=live)
            tail_batches = [batch async for batch in tail]
    assert content(content_type, batches) == expected(content_type, range(2))
    assert batches[-1].closed
    assert res.closed
    assert [(b.closed, len(b)) for b in tail_batches] == [(True, 0)]
    assert hook.modes == []  # catch-up saw Stream-Closed: no live request at all


@pytest.mark.parametrize("live", ALL_MODES)
@pytest.mark.parametrize("content_type", [JSON, BINARY])
async def test_offset_now_skips_history(
    stream_url: str,
    content_type: str,
    live: Any,
    live_requests: tuple[httpx.AsyncClient, LiveRequests],
) -> None:
    client, hook = live_requests
    writer = await make_stream(stream_url, content_type, 3)
    async with writer, StreamHandle(stream_url, client=client) as reader:
        if live is False:
            with anyio.fail_after(10):
                res = await reader.stream(offset="now")
                batches = [batch async for batch in res]
            assert [(len(b), b.up_to_date) for b in batches] == [(0, True)]
            assert res.offset == (await writer.head()).next_offset
            return

        async def append_later() -> None:
            await hook.waiting.wait()
            await writer.append(message(content_type, 3))
            await writer.close()

        with anyio.fail_after(10):
            async with (
                anyio.create_task_group() as tg,
                reader.stream(offset="now", live=live) as res,
            ):
                # Started once the first response is in (a 204 after the server's 1 s
                # long-poll wait, or SSE's first control), so `now` is already fixed
                # and the append must arrive.
                tg.start_soon(append_later)
                batches = [batch async for batch in res]
    assert content(content_type, batches) == expected(content_type, range(3, 4))
    assert res.closed
    assert res.offset != "now"


@pytest.mark.parametrize("live", ALL_MODES)
@pytest.mark.parametrize("offset", ["-1", "now"])
async def test_missing_stream_is_not_found_in_every_mode(
    stream_url: str, live: Any, offset: str
) -> None:
    async with StreamHandle(stream_url, content_type=JSON) as reader:
        with anyio.fail_after(10), pytest.raises(NotFoundError):
            await reader.stream(offset=offset, live=live)


async def test_module_level_stream_owns_its_client(stream_url: str) -> None:
    writer = await make_stream(stream_url, JSON, 3)
    async with writer:
        with anyio.fail_after(10):
            async with durable_streams.stream(stream_url) as res:
                items = [item async for item in res.iter_json()]
            assert items == expected(JSON, range(3))
            assert res._loop.transport.client.is_closed
            res = await durable_streams.stream(stream_url, offset="now", live=False)
            assert await res.json() == []
            assert res._loop.transport.client.is_closed
