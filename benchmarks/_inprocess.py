"""Scenario 9: the in-process test server (``durable_streams.testing``) against the reference
server over loopback, both driven through the SDK.

In the table the "SDK" column is the in-process ``InMemoryServer`` (``server.client()``: no
sockets) and the "raw" column the pinned reference server on 127.0.0.1: the ratio says how much
faster (or slower) a user's tests run against the in-process server. Also the cost of the pytest
fixtures' setup (``ds_server`` + ``ds_client`` + ``ds_stream_url``), which the issue wants
under 50 ms.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable

from durable_streams import StreamHandle
from durable_streams.testing import InMemoryServer

from ._harness import (
    BYTES_TYPE,
    JSON_TYPE,
    Bench,
    Row,
    compare_latency,
    interleaved,
    latency_rows,
    median,
)

COLUMNS = "SDK column: in-process server; raw column: reference server over loopback"


async def inprocess_vs_reference(bench: Bench) -> list[Row]:
    """9. Append p50/p99, catch-up messages/s, fixture setup time."""
    sizes = bench.sizes
    server = InMemoryServer()
    payload = os.urandom(100)
    rows: list[Row] = []
    async with (
        server.client() as client,
        StreamHandle(server.stream_url("append"), client=client) as local,
        StreamHandle(bench.new_url("inprocess-append")) as remote,
    ):
        await local.create(content_type=BYTES_TYPE)
        await remote.create(content_type=BYTES_TYPE)

        async def local_append() -> object:
            return (await local.append(payload)).next_offset

        async def remote_append() -> object:
            return (await remote.append(payload)).next_offset

        local_rounds, remote_rounds = await compare_latency(sizes, local_append, remote_append)
        for row in latency_rows("9 append 100 B, in-process", local_rounds, remote_rounds):
            row.note = COLUMNS
            rows.append(row)

        count = sizes.catchup_messages
        message = {"kind": "event", "text": "x" * 60}
        local_json = StreamHandle(server.stream_url("catchup"), client=client)
        remote_json = StreamHandle(bench.new_url("inprocess-catchup"))
        async with local_json, remote_json:
            for handle in (local_json, remote_json):
                await handle.create(content_type=JSON_TYPE)
                for start in range(0, count, 5000):
                    await handle.append_many([message] * min(5000, count - start))

            def reader(handle: StreamHandle) -> Callable[[], Awaitable[float]]:
                async def read() -> float:
                    seen = 0
                    started = time.perf_counter()
                    async with handle.stream(offset="-1", live=False) as response:
                        async for _item in response.iter_json():
                            seen += 1
                    if seen != count:
                        raise RuntimeError(f"read {seen} items, expected {count}")
                    return time.perf_counter() - started

                return read

            await reader(local_json)()
            await reader(remote_json)()
            local_times, remote_times = await interleaved(
                sizes.catchup_rounds, reader(local_json), reader(remote_json)
            )
        name = f"9 catch-up JSON {count:,} x ~80 B, in-process"
        rows.append(
            Row(
                name,
                "messages/s",
                "msg/s",
                count / median(local_times),
                count / median(remote_times),
                note=COLUMNS,
            )
        )

    setups = []
    for _ in range(200):
        started = time.perf_counter()
        fixture_server = InMemoryServer()
        fixture_server.client()
        fixture_server.stream_url(f"test-{uuid.uuid4().hex}")
        setups.append(time.perf_counter() - started)
    rows.append(
        Row(
            "9 pytest fixtures setup",
            "p50 (ds_server+ds_client+url)",
            "ms",
            median(setups) * 1000,
            None,
            target="< 50 ms",
            met=median(setups) * 1000 < 50,
            note=f"max of 200: {max(setups) * 1000:.2f} ms",
        )
    )
    return rows
