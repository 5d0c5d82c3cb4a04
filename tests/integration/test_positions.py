"""Resuming from a Position against the reference server: exact, at every item and chunk.

The reference server answers a catch-up with the whole stream in one response, so
offsets exist only at its end; positions are what let a reader stop anywhere
inside it and resume with nothing repeated and nothing skipped.
"""

from __future__ import annotations

import os

import anyio
import pytest

from durable_streams import (
    InvalidOffsetError,
    Position,
    StreamHandle,
    UsageError,
)

pytestmark = pytest.mark.anyio

JSON = "application/json"


async def json_stream(url: str, count: int) -> list[dict[str, int]]:
    items = [{"n": n} for n in range(count)]
    async with StreamHandle(url) as writer:
        await writer.create(content_type=JSON)
        for start in range(0, count, 7):  # several appends, one response on catch-up
            await writer.append_many(items[start : start + 7])
    return items


async def test_resuming_iter_json_at_every_item_repeats_and_skips_nothing(
    stream_url: str,
) -> None:
    items = await json_stream(stream_url, 30)
    async with StreamHandle(stream_url) as handle:
        for stop in range(len(items) + 1):
            with anyio.fail_after(10):
                async with handle.stream(live=False) as res:
                    taken = 0
                    if stop:
                        async for _ in res.iter_json():
                            taken += 1
                            if taken == stop:
                                break
                    stored = str(res.position)
                async with handle.stream(offset=Position.parse(stored), live=False) as rest:
                    remainder = [item async for item in rest.iter_json()]
            assert remainder == items[stop:], stop


async def test_the_position_inside_a_loop_body_is_after_the_current_item(
    stream_url: str,
) -> None:
    items = await json_stream(stream_url, 10)
    async with StreamHandle(stream_url) as handle:
        async with handle.stream(live=False) as res:
            positions = [res.position async for _ in res.iter_json()]
        assert positions[0].skip == 1
        assert positions[-1] == Position(res.offset)  # the last item ends the response
        for index, position in enumerate(positions):
            async with handle.stream(offset=position, live=False) as rest:
                assert await rest.json() == items[index + 1 :]


async def test_batches_resume_from_an_item_position(stream_url: str) -> None:
    items = await json_stream(stream_url, 12)
    async with StreamHandle(stream_url) as handle:
        async with handle.stream(live=False) as res:
            taken = 0
            async for _ in res.iter_json():
                taken += 1
                if taken == 5:  # five items in, however many responses they came in
                    break
            position = res.position
        async with handle.stream(offset=position, live=False) as rest:
            batches = [batch async for batch in rest]
        assert [item for batch in batches for item in batch.items] == items[5:]
        assert batches[-1].position == Position(batches[-1].offset)


async def test_resuming_iter_bytes_at_every_chunk_is_exact(stream_url: str) -> None:
    data = os.urandom(2 * 1024 * 1024)  # incompressible: several chunks in one response
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/octet-stream")
        await handle.append(data)
        positions: list[tuple[int, Position]] = []
        received = 0
        async with handle.stream(live=False) as res:
            async for chunk in res.iter_bytes():
                received += len(chunk)
                positions.append((received, res.position))
        assert received == len(data)
        assert len(positions) > 2
        for consumed, position in positions:
            assert position.unit == "bytes" or position.skip == 0
            async with handle.stream(offset=Position.parse(str(position)), live=False) as rest:
                assert await rest.body() == data[consumed:]


async def test_a_live_reader_resumes_inside_an_sse_group(stream_url: str) -> None:
    async with StreamHandle(stream_url) as writer:
        await writer.create(content_type=JSON)
        with anyio.fail_after(10):
            async with writer.stream(live="sse") as res:
                await writer.append_many([{"n": n} for n in range(5)])
                async for item in res.iter_json():
                    if item == {"n": 2}:
                        break
                position = res.position
            await writer.append_many([{"n": 5}, {"n": 6}])
            async with writer.stream(offset=position, live=False) as rest:
                assert await rest.json() == [{"n": n} for n in range(3, 7)]


async def test_an_item_position_cannot_resume_a_byte_read(stream_url: str) -> None:
    await json_stream(stream_url, 5)
    async with StreamHandle(stream_url) as handle:
        res = await handle.stream(offset=Position("-1", 2), live=False)
        with pytest.raises(UsageError, match="counts bytes"):
            async for _ in res.iter_bytes():
                pass


async def test_a_position_past_the_tail_is_an_invalid_offset(stream_url: str) -> None:
    await json_stream(stream_url, 5)
    async with StreamHandle(stream_url) as handle:
        res = await handle.stream(offset=Position("-1", 6), live=False)
        with pytest.raises(InvalidOffsetError, match="still to skip"):
            await res.json()
