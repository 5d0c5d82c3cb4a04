"""Scenario 10: the sync API's overhead, against the async API.

``durable_streams.sync`` runs the async core on a background event loop
thread; each blocking call crosses threads twice. This measures sequential
100 B appends through a sync ``StreamHandle`` (in a worker thread, as a WSGI
view would call it) against the same appends through the async handle, in
interleaved rounds on separate streams of the same server. Then producer
throughput: the sync ``IdempotentProducer.append()`` does not cross threads
per item, so it is compared with the async producer on the same messages.
"""

from __future__ import annotations

import json
import os
import time

import anyio

from durable_streams import IdempotentProducer, StreamHandle
from durable_streams import sync as ds_sync

from ._harness import (
    BYTES_TYPE,
    JSON_TYPE,
    Bench,
    Row,
    interleaved,
    latency_rows,
    median,
    raw_client,
    timed_samples,
)
from ._producer import _verify
from ._reads import make_messages

SYNC_TARGET = "<= 1.2x async"
MAX_SYNC_RATIO = 1.2


async def sync_overhead(bench: Bench) -> list[Row]:
    """10. The sync API against the async API: append latency, producer throughput."""
    return await sync_append_latency(bench) + await sync_producer_throughput(bench)


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


async def sync_producer_throughput(bench: Bench) -> list[Row]:
    """10b. ``producer.append(dict)`` for every message, then flush: sync (one thread) vs async."""
    count = bench.sizes.producer_messages
    items = [json.loads(message) for message in make_messages(count)]

    def sync_run(url: str) -> float:
        with ds_sync.StreamHandle(url) as handle:
            start = time.perf_counter()
            with ds_sync.IdempotentProducer(handle, "bench-sync-producer") as producer:
                for item in items:
                    producer.append(item)
                producer.flush()
                return time.perf_counter() - start

    async def async_run(url: str) -> float:
        async with StreamHandle(url) as handle:
            start = time.perf_counter()
            async with IdempotentProducer(handle, "bench-async-producer") as producer:
                for item in items:
                    producer.append(item)
                await producer.flush()
                return time.perf_counter() - start

    times: dict[str, list[float]] = {"sync": [], "async": []}
    async with raw_client() as client:
        for round_index in range(bench.sizes.producer_rounds + 1):
            order = ["sync", "async"] if round_index % 2 == 0 else ["async", "sync"]
            for name in order:
                url = bench.new_url(f"producer-{name}")
                (await client.put(url, headers={"content-type": JSON_TYPE})).raise_for_status()
                if name == "sync":
                    elapsed = await anyio.to_thread.run_sync(sync_run, url)
                else:
                    elapsed = await async_run(url)
                await _verify(client, url, count)
                if round_index > 0:  # round 0 warms both up
                    times[name].append(elapsed)
    return [
        Row(
            f"10 sync producer {count:,} x 100 B dicts",
            "messages/s",
            "msg/s",
            count / median(times["sync"]),
            count / median(times["async"]),
            note="SDK = sync IdempotentProducer from one thread, baseline = async producer",
        )
    ]
