"""Consumption helpers against the reference server: subscribe, text/json/body, iter_*."""

from __future__ import annotations

import os
import re

import anyio
import httpx
import pydantic
import pytest

import durable_streams
from durable_streams import Batch, StreamHandle, ValidationError

pytestmark = pytest.mark.anyio

JSON = "application/json"


class ChatEvent(pydantic.BaseModel):
    role: str
    text: str


async def test_subscribe_json_live_with_backpressure(stream_url: str) -> None:
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type=JSON)
        await writer.append({"role": "user", "text": "hi"})
        received: list[tuple[list[object], str]] = []

        async def on_batch(batch: Batch) -> None:
            received.append((batch.items, batch.offset))
            if len(received) == 1:
                # Appending from inside the callback: the read waits for us, then sees it.
                await writer.append({"role": "assistant", "text": "hello"})
                await writer.close()

        with anyio.fail_after(10):
            res = await writer.stream(live="auto")
            await res.subscribe_json(on_batch)
    items = [item for batch_items, _ in received for item in batch_items]
    assert items == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}]
    assert res.closed
    assert res.offset == received[-1][1]


async def test_text_json_and_body(stream_url: str) -> None:
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type="text/plain")
        await writer.append("Hello, ")
        await writer.append("wörld")
        with anyio.fail_after(10):
            assert await (await writer.stream(live=False)).text() == "Hello, wörld"
            assert await (await writer.stream()).body() == "Hello, wörld".encode()

    async with StreamHandle(stream_url + "-json") as writer:
        await writer.create(content_type=JSON)
        await writer.append_many([{"n": 1}, [1, 2], 3])
        with anyio.fail_after(10):
            assert await (await writer.stream()).json() == [{"n": 1}, [1, 2], 3]
            assert await (await writer.stream(live="long-poll")).json() == [{"n": 1}, [1, 2], 3]


async def test_iter_json_with_a_model(stream_url: str) -> None:
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type=JSON)
        await writer.append_many([{"role": "user", "text": "hi"}, {"role": "bot", "text": "yo"}])
        with anyio.fail_after(10):
            res = await writer.stream(live=False)
            events = [event async for event in res.iter_json(model=ChatEvent)]
    assert events == [ChatEvent(role="user", text="hi"), ChatEvent(role="bot", text="yo")]
    assert res.up_to_date


async def test_iter_json_validation_error_names_the_offset(stream_url: str) -> None:
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type=JSON)
        await writer.append({"role": "user", "text": "hi"})
        good_end = (await writer.head()).next_offset
        assert good_end is not None
        await writer.append({"role": "user"})  # no text: does not validate
        res = await writer.stream(offset=good_end)
        events: list[ChatEvent] = []

        async def read() -> None:
            async for event in res.iter_json(model=ChatEvent):
                events.append(event)

        with anyio.fail_after(10), pytest.raises(ValidationError) as caught:
            await read()
        assert caught.value.offset == good_end
        assert events == []
        async with durable_streams.stream(stream_url) as valid:
            first = [e async for e in valid.iter_json(model=pydantic.TypeAdapter(dict))]
        assert first[0] == {"role": "user", "text": "hi"}


async def test_iter_json_validation_error_counts_items_across_a_large_response(
    stream_url: str,
) -> None:
    # ~2 MB in one response: parsed in several groups, yet the index is the response's.
    events: list[dict[str, str]] = [{"role": "user", "text": f"{n:060d}"} for n in range(40_000)]
    events[30_000] = {"role": "user"}  # no text: does not validate
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type=JSON)
        await writer.append_many(events)
        res = await writer.stream()
        received: list[ChatEvent] = []

        async def read() -> None:
            async for event in res.iter_json(model=ChatEvent):
                received.append(event)

        with anyio.fail_after(10), pytest.raises(ValidationError) as raised:
            await read()
        # The index is the item's within its response (not within a parsed group): 30000 when
        # the server answers with the whole stream at once, and in general 30000 less the items
        # of the responses before it.
        found = re.search(r"item (\d+) of the response read at offset (\S+) ", str(raised.value))
        assert found is not None, str(raised.value)
        before = counted = 0
        async with writer.stream(live=False) as again:  # the same responses again
            async for batch in again:
                counted += len(batch.items)
                if batch.offset == found[2]:
                    before = counted
                    break
        assert before + int(found[1]) == 30_000
    assert len(received) <= 30_000  # none after the bad one


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_large_binary_stream_streams_exact_bytes(stream_url: str) -> None:
    payload = os.urandom(1024 * 1024)  # compressed responses included (>= 1 KiB)
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type="application/octet-stream")
        for start in range(0, len(payload), 256 * 1024):
            await writer.append(payload[start : start + 256 * 1024])
        await writer.close()
        with anyio.fail_after(30):
            res = await writer.stream(live="long-poll")
            chunks = [chunk async for chunk in res.iter_bytes()]
            assert b"".join(chunks) == payload
            assert res.closed
            res = await writer.stream(live="sse")
            assert await res.body() == payload


async def test_iter_text_live(stream_url: str) -> None:
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type="text/plain")
        await writer.append("é" * 10)
        parts: list[str] = []
        with anyio.fail_after(10):
            res = await writer.stream(live="sse")
            async for text in res.iter_text():
                parts.append(text)
                if len(parts) == 1:
                    await writer.append("☃")
                    await writer.close()
    assert "".join(parts) == "é" * 10 + "☃"
    assert res.closed


async def test_repeated_read_at_the_tail_is_revalidated(stream_url: str) -> None:
    statuses: list[int] = []

    async def on_response(response: httpx.Response) -> None:
        if response.request.method == "GET":
            statuses.append(response.status_code)

    async with (
        httpx.AsyncClient(event_hooks={"response": [on_response]}) as client,
        StreamHandle(stream_url, client=client) as handle,
    ):
        await handle.create(content_type=JSON)
        await handle.append({"n": 1})
        tail = (await handle.head()).next_offset
        assert tail is not None
        with anyio.fail_after(10):
            assert await (await handle.stream(offset=tail)).json() == []
            assert await (await handle.stream(offset=tail)).json() == []  # 304: nothing new
            await handle.append({"n": 2})
            assert await (await handle.stream(offset=tail)).json() == [{"n": 2}]
            await handle.close()
            final = (await handle.head()).next_offset
            assert final is not None
            eof = await handle.stream(offset=final)
            assert [b.closed async for b in eof] == [True]
    assert statuses == [200, 304, 200, 200]


async def test_a_whole_item_over_max_message_bytes_is_refused_in_every_json_read(
    stream_url: str,
) -> None:
    limits = durable_streams.ReadLimits(max_message_bytes=1_000)
    async with StreamHandle(stream_url, limits=limits) as handle:
        await handle.create(content_type="application/json")
        await handle.append_many([{"n": 1}, {"text": "x" * 10_000}, {"n": 3}])
        async with handle.stream() as res:
            with pytest.raises(durable_streams.ParseError, match="max_message_bytes=1000"):
                await res.json()
        async with handle.stream() as res:
            with pytest.raises(durable_streams.ParseError, match="max_message_bytes=1000"):
                [item async for item in res.iter_json()]
        async with handle.stream() as res:
            with pytest.raises(durable_streams.ParseError, match="max_message_bytes=1000"):
                [batch async for batch in res]
        roomy = durable_streams.ReadLimits(max_message_bytes=20_000)
        async with handle.stream(limits=roomy) as res:
            assert len([item async for item in res.iter_json()]) == 3
