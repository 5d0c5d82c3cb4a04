"""InMemoryServer behaviour the conformance suites do not pin down: pages, SSE framing, waits."""

from __future__ import annotations

import json

import anyio
import anyio.lowlevel
import pytest

from durable_streams import NotFoundError, StreamHandle
from durable_streams.testing import InMemoryServer

pytestmark = pytest.mark.anyio


async def test_json_reads_come_in_pages_of_page_size_messages() -> None:
    server = InMemoryServer(page_size=2)
    async with server.client(base_url=server.url) as client:
        await client.put("/j", content=b"[1,2,3,4,5]", headers={"content-type": "application/json"})
        bodies, offset = [], "-1"
        while True:
            response = await client.get("/j", params={"offset": offset})
            bodies.append(response.json())
            offset = response.headers["stream-next-offset"]
            if "stream-up-to-date" in response.headers:
                break
    assert bodies == [[1, 2], [3, 4], [5]]


async def test_page_bytes_cuts_byte_streams_anywhere_and_json_between_messages() -> None:
    server = InMemoryServer(page_bytes=4)
    async with server.client(base_url=server.url) as client:
        await client.put("/b", content=b"0123456789", headers={"content-type": "text/plain"})
        first = await client.get("/b", params={"offset": "-1"})
        assert first.content == b"0123"
        assert "stream-up-to-date" not in first.headers
        await client.put(
            "/j", content=b'["abcdef",1]', headers={"content-type": "application/json"}
        )
        whole = await client.get("/j", params={"offset": "-1"})
        assert whole.json() == ["abcdef"]  # a message larger than the page is never cut


async def test_sse_sends_a_control_after_every_page() -> None:
    server = InMemoryServer(page_size=1)
    async with server.client(base_url=server.url) as client:
        await client.put("/j", content=b"[1,2]", headers={"content-type": "application/json"})
        await client.post(
            "/j",
            params={},
            content=b"3",
            headers={"stream-closed": "true", "content-type": "application/json"},
        )
        async with client.stream("GET", "/j", params={"offset": "-1", "live": "sse"}) as response:
            text = (await response.aread()).decode()
    events = [block for block in text.split("\n\n") if block]
    kinds = [block.split("\n")[0] for block in events]
    assert kinds == ["event: data", "event: control"] * 3
    last = json.loads(events[-1].split("data:", 1)[1])
    assert last["streamClosed"] is True


async def test_a_long_poll_wakes_on_append_and_a_delete_ends_it_with_404() -> None:
    server = InMemoryServer(long_poll_timeout=30)
    async with server.client() as client:
        handle = StreamHandle(server.stream_url("s"), client=client)
        await handle.create(content_type="application/json")
        with anyio.fail_after(5):
            async with handle.stream(live="long-poll") as res:
                await handle.append({"n": 1})
                async for batch in res:
                    if batch.items:  # after the (empty) catch-up
                        assert batch.items == [{"n": 1}]
                        break
            async with anyio.create_task_group() as tasks:

                async def read() -> None:
                    with pytest.raises(NotFoundError):
                        await (await handle.stream(offset="now", live="long-poll")).json()

                tasks.start_soon(read)
                waiting = server.store.streams["/v1/stream/s"].waiters
                while not waiting:  # until the long-poll waits on the stream
                    await anyio.lowlevel.checkpoint()
                await handle.delete()


async def test_forks_read_through_their_source_up_to_the_fork_offset() -> None:
    server = InMemoryServer()
    async with server.client() as client:
        source = StreamHandle(server.stream_url("src"), client=client)
        await source.create(content_type="text/plain", body=b"hello")
        fork = StreamHandle(server.stream_url("fork"), client=client)
        await fork.create(
            forked_from="/v1/stream/src", fork_offset=(await source.head()).next_offset
        )
        await source.append(b" later")  # after the fork: never seen by it
        await fork.append(b"!")
        assert await (await fork.stream(live=False)).body() == b"hello!"
