"""Scenarios 3 and 6: catch-up reads.

3. A JSON stream of ~100 B messages read from the start to up-to-date with the
   items parsed: the SDK's ``iter_json()`` against GET + ``json.loads`` per page.
6. A large byte stream read with ``iter_bytes()`` against httpx streaming
   (``client.stream`` + ``aiter_bytes``): throughput and peak RSS growth. Each
   read runs in a fresh child process (``_memory_child``) so one variant's freed
   memory cannot hide or inflate the other's peak.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from urllib.parse import quote

import httpx

from durable_streams import StreamHandle

from ._harness import (
    BYTES_TYPE,
    JSON_TYPE,
    REPO_ROOT,
    Bench,
    Row,
    check_status,
    interleaved,
    median,
    raw_client,
)

MESSAGE_SIZE = 100
BATCH_BYTES = 1 << 20
MIB = 1 << 20


def make_messages(count: int) -> list[bytes]:
    """``count`` distinct pre-serialised JSON objects of exactly 100 bytes, ``id`` 0..count-1."""
    # Random text (base64 of random bytes) so gzip does not flatter either side.
    noise = base64.b64encode(os.urandom(count * MESSAGE_SIZE * 3 // 4 + 3))
    messages = []
    for i in range(count):
        head = b'{"id":%d,"kind":"bench.event","text":"' % i
        pad = MESSAGE_SIZE - len(head) - 2
        messages.append(head + noise[i * MESSAGE_SIZE : i * MESSAGE_SIZE + pad] + b'"}')
    return messages


def batches(messages: list[bytes], limit: int = BATCH_BYTES) -> list[bytes]:
    """The messages as JSON-array request bodies of at most ``limit`` bytes."""
    bodies: list[bytes] = []
    batch: list[bytes] = []
    size = 2
    for message in messages:
        if batch and size + len(message) + 1 > limit:
            bodies.append(b"[" + b",".join(batch) + b"]")
            batch, size = [], 2
        batch.append(message)
        size += len(message) + 1
    if batch:
        bodies.append(b"[" + b",".join(batch) + b"]")
    return bodies


async def fill_stream(
    client: httpx.AsyncClient, url: str, content_type: str, bodies: list[bytes]
) -> None:
    """Create ``url`` and append ``bodies`` to it (setup: not timed)."""
    headers = {"content-type": content_type}
    check_status(await client.put(url, headers=headers), 201)
    for body in bodies:
        check_status(await client.post(url, content=body, headers=headers), 204)


def read_url(url: str, offset: str, **extra: str) -> str:
    """``url`` with the protocol query, keys sorted as the SDK sends them."""
    params = {"offset": offset, **extra}
    query = "&".join(f"{key}={quote(params[key], safe='')}" for key in sorted(params))
    return f"{url}?{query}"


async def raw_read_json(client: httpx.AsyncClient, url: str) -> tuple[list[object], int]:
    """Baseline catch-up: GET pages from the start to up-to-date, ``json.loads`` each.
    Returns the items and the JSON bytes received."""
    items: list[object] = []
    size = 0
    offset = "-1"
    while True:
        response = check_status(await client.get(read_url(url, offset)), 200)
        body = response.content
        items += json.loads(body)
        size += len(body)
        offset = response.headers["stream-next-offset"]
        if (
            "stream-up-to-date" in response.headers
            or response.headers.get("stream-closed", "").lower() == "true"
        ):
            return items, size


async def catchup_json(bench: Bench) -> list[Row]:
    """3. Catch-up read of a JSON stream of ~100 B messages, items parsed."""
    sizes = bench.sizes
    count = sizes.catchup_messages
    url = bench.new_url("catchup")
    async with raw_client() as client, StreamHandle(url) as handle:
        await fill_stream(client, url, JSON_TYPE, batches(make_messages(count)))

        async def sdk_read() -> float:
            seen = 0
            start = time.perf_counter()
            async with handle.stream(offset="-1", live=False) as response:
                async for _item in response.iter_json():
                    seen += 1
            elapsed = time.perf_counter() - start
            if seen != count:
                raise RuntimeError(f"SDK read {seen} items, expected {count}")
            return elapsed

        json_bytes = 0

        async def raw_read() -> float:
            nonlocal json_bytes
            start = time.perf_counter()
            items, json_bytes = await raw_read_json(client, url)
            elapsed = time.perf_counter() - start
            if len(items) != count:
                raise RuntimeError(f"raw read {len(items)} items, expected {count}")
            return elapsed

        await sdk_read()  # warm-up: connections, code paths, server caches
        await raw_read()
        sdk_times, raw_times = await interleaved(sizes.catchup_rounds, sdk_read, raw_read)
        await client.delete(url)
    sdk_s, raw_s = median(sdk_times), median(raw_times)
    target = ">= 0.9x raw + json.loads"
    name = f"3 catch-up JSON {count:,} x 100 B"
    rows = [
        Row(name, "messages/s", "msg/s", count / sdk_s, count / raw_s, target=target),
        Row(name, "MB/s (JSON)", "MB/s", json_bytes / sdk_s / 1e6, json_bytes / raw_s / 1e6),
    ]
    ratio = rows[0].ratio
    rows[0].met = ratio is not None and ratio >= 0.9
    return rows


async def run_child(variant: str, url: str, expected: int) -> dict[str, float]:
    """One read in a fresh process (``_memory_child``): its JSON report."""
    import anyio

    done = await anyio.run_process(
        [sys.executable, "-m", "benchmarks._memory_child", variant, url, str(expected)],
        cwd=REPO_ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{variant} reader failed: {done.stderr.decode(errors='replace')[-800:]}"
        )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def pick(runs: list[dict[str, float]], key: str) -> float:
    return median([run[key] for run in runs])


def memory_row(
    name: str, sdk_runs: list[dict[str, float]], raw_runs: list[dict[str, float]]
) -> Row:
    return Row(
        name,
        "peak RSS growth",
        "MiB",
        pick(sdk_runs, "peak_growth") / MIB,
        pick(raw_runs, "peak_growth") / MIB,
        target="<= 16 MiB",
        note="kernel peak RSS (VmHWM, reset at start) in a fresh process; sampled every "
        f"2 ms: SDK {pick(sdk_runs, 'sampled_growth') / MIB:.2f} MiB, "
        f"raw {pick(raw_runs, 'sampled_growth') / MIB:.2f} MiB",
    )


async def read_memory(bench: Bench) -> list[Row]:
    """6. Large catch-ups in bounded memory: bytes (``iter_bytes``) and JSON (``iter_json``)."""
    rows = await read_bytes_memory(bench)
    rows += await read_json_memory(bench)
    return rows


async def read_json_memory(bench: Bench) -> list[Row]:
    """6b. Read a large JSON stream item by item: peak RSS growth, each read in a fresh process."""
    sizes = bench.sizes
    count = sizes.memory_mib * MIB // MESSAGE_SIZE // 2  # about half the byte read's size
    url = bench.new_url("json-memory")
    async with raw_client() as client:
        await fill_stream(client, url, JSON_TYPE, batches(make_messages(count)))
        sdk_runs, raw_runs = await interleaved(
            sizes.memory_rounds,
            lambda: run_child("sdk-json", url, count),
            lambda: run_child("raw-json", url, count),
        )
        await client.delete(url)
    # The target is about the SDK's own bound; raw json.loads holds the whole response.
    memory = memory_row(
        f"6 read {count:,} JSON items (~{count * MESSAGE_SIZE // MIB} MiB)", sdk_runs, raw_runs
    )
    memory.met = memory.sdk is not None and memory.sdk <= 32
    memory.target = "<= 32 MiB"
    return [memory]


async def read_bytes_memory(bench: Bench) -> list[Row]:
    """6. Read a large byte stream: MB/s and peak RSS growth, each read in a fresh process."""
    sizes = bench.sizes
    total = sizes.memory_mib * MIB
    url = bench.new_url("bytes")
    chunk = os.urandom(4 * MIB)  # large appends; random, so gzip cannot shrink them
    bodies = [chunk[: min(4 * MIB, total - start)] for start in range(0, total, 4 * MIB)]
    async with raw_client() as client:
        await fill_stream(client, url, BYTES_TYPE, bodies)
        sdk_runs, raw_runs = await interleaved(
            sizes.memory_rounds,
            lambda: run_child("sdk", url, total),
            lambda: run_child("raw", url, total),
        )
        await client.delete(url)
    name = f"6 read {sizes.memory_mib} MiB as bytes"
    throughput = Row(
        name,
        "MB/s",
        "MB/s",
        total / pick(sdk_runs, "seconds") / 1e6,
        total / pick(raw_runs, "seconds") / 1e6,
    )
    memory = memory_row(name, sdk_runs, raw_runs)
    memory.met = memory.sdk is not None and memory.sdk <= 16
    return [throughput, memory]
