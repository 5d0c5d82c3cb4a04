"""Scenario 8: the sync API's overhead per call, against the async API.

``durable_streams.sync`` runs the async core on a background event loop
thread; each blocking call crosses threads twice. This measures sequential
100 B appends through a sync ``StreamHandle`` (in a worker thread, as a WSGI
view would call it) against the same appends through the async handle, in
interleaved rounds on separate streams of the same server.
"""

from __future__ import annotations

import os
import time

import anyio

from durable_streams import StreamHandle
from durable_streams import sync as ds_sync

from ._harness import BYTES_TYPE, Bench, Row, interleaved, latency_rows, timed_samples

SYNC_TARGET = "<= 1.2x async"
MAX_SYNC_RATIO = 1.2


async def sync_append_latency(bench: Bench) -> list[Row]:
    """10. Sequential 100 B appends: sync API (worker thread) vs async API, p50/p99."""
    sizes = bench.sizes
    payload = os.urandom(100)
    sync_url, async_url = bench.new_url("append-sync"), bench.new_url("append-async")

    def sync_samples(handle: ds_sync.StreamHandle, count: int) -> list[float]:
        samples = []
        clock = time.perf_counter
        for _ in range(count):
            start = clock()
            handle.append(payload)
            samples.append(clock() - start)
        return samples

    sync_handle = await anyio.to_thread.run_sync(ds_sync.StreamHandle, sync_url)
    try:
        async with StreamHandle(async_url) as handle:
            await anyio.to_thread.run_sync(lambda: sync_handle.create(content_type=BYTES_TYPE))
            await handle.create(content_type=BYTES_TYPE)

            async def sync_round(count: int) -> list[float]:
                return await anyio.to_thread.run_sync(sync_samples, sync_handle, count)

            async def async_append() -> object:
                return (await handle.append(payload)).next_offset

            await sync_round(sizes.warmup)
            await timed_samples(sizes.warmup, async_append)
            sync_rounds, async_rounds = await interleaved(
                sizes.rounds,
                lambda: sync_round(sizes.latency_samples),
                lambda: timed_samples(sizes.latency_samples, async_append),
            )
    finally:
        await anyio.to_thread.run_sync(sync_handle.release)
    rows = latency_rows(
        "10 sync append 100 B",
        sync_rounds,
        async_rounds,
        max_ratio=MAX_SYNC_RATIO,
        target=SYNC_TARGET,
    )
    for row in rows:
        row.note = "SDK = sync API, baseline = async API (not raw httpx)"
    return rows
