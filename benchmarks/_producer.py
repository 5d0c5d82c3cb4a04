"""Scenario 4: producer throughput, timed until ``flush()`` returns, verified by reading back.

- SDK: ``IdempotentProducer.append()`` of every message, then ``await flush()``;
  pre-serialised ``bytes`` and the same messages as Python dicts.
- Baseline: the same messages joined into 1 MiB JSON-array bodies and POSTed one
  at a time with producer headers (for dicts: ``json.dumps`` each first).
- Ceiling (raw only): the prebuilt 1 MiB bodies POSTed 5 at a time without
  producer headers: how fast this server ingests JSON at all.
- ``json.dumps`` of the dicts alone: the serialisation cost the dict target is
  measured against.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from durable_streams import IdempotentProducer, StreamHandle

from ._harness import (
    JSON_TYPE,
    Bench,
    Row,
    check_status,
    median,
    raw_client,
)
from ._reads import BATCH_BYTES, batches, make_messages, raw_read_json

PRODUCER_ID = "bench-producer"
PRODUCER_TARGET = 1_000_000  # msg/s
CEILING_CONCURRENCY = 5


def _compact(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode()


async def _verify(client: httpx.AsyncClient, url: str, count: int) -> None:
    """Read the stream back: every message present once, in order. Then free it."""
    items, _ = await raw_read_json(client, url)
    ids = [item["id"] for item in items if isinstance(item, dict)]
    if ids != list(range(count)):
        raise RuntimeError(f"read back {len(items)} messages from {url}, not 0..{count - 1}")
    await client.delete(url)


async def producer_throughput(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    count = sizes.producer_messages
    messages = make_messages(count)
    dicts = [json.loads(message) for message in messages]
    headers = {"content-type": JSON_TYPE}

    async with raw_client() as client:

        async def fresh_stream(label: str) -> str:
            url = bench.new_url(label)
            check_status(await client.put(url, headers=headers), 201)
            return url

        async def sdk_run(items: list[Any]) -> float:
            url = await fresh_stream("producer-sdk")
            async with StreamHandle(url, content_type=JSON_TYPE) as handle:
                start = time.perf_counter()
                async with IdempotentProducer(handle, PRODUCER_ID) as producer:
                    for item in items:
                        producer.append(item)
                    await producer.flush()
                    elapsed = time.perf_counter() - start
            await _verify(client, url, len(items))
            return elapsed

        async def raw_run(items: list[Any], encode: Callable[[Any], bytes]) -> float:
            url = await fresh_stream("producer-raw")
            start = time.perf_counter()
            seq = 0

            async def post(batch: list[bytes]) -> None:
                nonlocal seq
                response = await client.post(
                    url,
                    content=b"[" + b",".join(batch) + b"]",
                    headers={
                        **headers,
                        "producer-id": PRODUCER_ID,
                        "producer-epoch": "0",
                        "producer-seq": str(seq),
                    },
                )
                check_status(response, 200, 204)
                seq += 1

            batch: list[bytes] = []
            size = 2
            for item in items:
                data = encode(item)
                if batch and size + len(data) + 1 > BATCH_BYTES:
                    await post(batch)
                    batch, size = [], 2
                batch.append(data)
                size += len(data) + 1
            if batch:
                await post(batch)
            elapsed = time.perf_counter() - start
            await _verify(client, url, len(items))
            return elapsed

        async def ceiling_run() -> float:
            url = await fresh_stream("producer-ceiling")
            bodies = batches(messages)
            start = time.perf_counter()
            send, receive = anyio.create_memory_object_stream[bytes](len(bodies))
            for body in bodies:
                send.send_nowait(body)
            send.close()

            async def worker() -> None:
                async for body in receive:
                    check_status(await client.post(url, content=body, headers=headers), 204)

            async with anyio.create_task_group() as group:
                for _ in range(CEILING_CONCURRENCY):
                    group.start_soon(worker)
            elapsed = time.perf_counter() - start
            items, _ = await raw_read_json(client, url)
            if len(items) != count:
                raise RuntimeError(f"ceiling run stored {len(items)} of {count} messages")
            await client.delete(url)
            return elapsed

        def dumps_run() -> float:
            start = time.perf_counter()
            for item in dicts:
                json.dumps(item)
            return time.perf_counter() - start

        runs: dict[str, Callable[[], Any]] = {
            "sdk bytes": lambda: sdk_run(messages),
            "raw bytes": lambda: raw_run(messages, bytes),
            "sdk dicts": lambda: sdk_run(dicts),
            "raw dicts": lambda: raw_run(dicts, _compact),
            "ceiling": ceiling_run,
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for round_index in range(sizes.producer_rounds + 1):
            names = list(runs)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:  # rotate the order each round
                elapsed = await runs[name]()
                if round_index > 0:  # round 0 is a warm-up of every variant
                    times[name].append(elapsed)
        dumps = median([dumps_run() for _ in range(3)])

    t = {name: median(values) for name, values in times.items()}
    name = f"4 producer {count:,} x 100 B"
    pre = Row(
        f"{name}, pre-serialised",
        "messages/s",
        "msg/s",
        count / t["sdk bytes"],
        count / t["raw bytes"],
        target=">= 1,000,000 msg/s and > raw",
        note="raw: 1 MiB batches POSTed one at a time",
    )
    pre.met = pre.sdk is not None and pre.sdk >= PRODUCER_TARGET and (pre.ratio or 0) > 1
    dict_row = Row(
        f"{name}, dicts",
        "messages/s",
        "msg/s",
        count / t["sdk dicts"],
        count / t["raw dicts"],
        note="raw: json.dumps each, then 1 MiB batches one at a time",
    )
    serialise = (t["sdk dicts"] - t["sdk bytes"]) / count * 1e6
    cost = Row(
        f"{name}, dicts",
        "serialisation cost",
        "us/msg",
        serialise,
        dumps / count * 1e6,
        target="<= 2x json.dumps",
        note="SDK: dict run minus bytes run; raw column: json.dumps alone "
        f"({count / dumps:,.0f} msg/s)",
    )
    cost.met = cost.ratio is not None and cost.ratio <= 2
    ceiling = Row(
        f"{name}, server ceiling",
        "messages/s",
        "msg/s",
        count / t["sdk bytes"],
        count / t["ceiling"],
        note=f"raw: prebuilt 1 MiB bodies, {CEILING_CONCURRENCY} POSTs in flight, "
        "no producer headers",
    )
    return [pre, dict_row, cost, ceiling]
