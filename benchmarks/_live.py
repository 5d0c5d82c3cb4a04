"""Scenario 5: live tail latency, append -> receipt, for one waiting reader.

A reader waits at the tail; a writer (a plain httpx client,
the same for every variant) appends one small JSON message at a time and the
figure is the time from just before the POST to the moment the reader holds the
message. Variants: the SDK in long-poll and SSE mode, and a raw long-poll loop.
Appends are paced a few milliseconds apart so the reader is waiting again
before the next one, as a tailing reader normally is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable

import anyio
import httpx

from durable_streams import LiveMode, StreamHandle

from ._harness import JSON_TYPE, Bench, Row, check_status, percentile, raw_client
from ._reads import read_url

#: Pause between appends; lets a long-poll reader re-arm its request.
PACE_SECONDS = 0.005
RECEIPT_TIMEOUT = 15.0
WARMUP_APPENDS = 5

OnItems = Callable[[Iterable[object]], None]
Reader = Callable[[str, OnItems], Awaitable[None]]


class Receipts:
    """When each numbered message (``{"k": n}``) first reached a reader."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}
        self._waiting: dict[int, anyio.Event] = {}

    def expect(self, key: int) -> anyio.Event:
        event = self._waiting[key] = anyio.Event()
        return event

    def record(self, items: Iterable[object]) -> None:
        now = time.perf_counter()
        for item in items:
            key = item["k"] if isinstance(item, dict) else None
            if isinstance(key, int) and key not in self.times:
                self.times[key] = now
                event = self._waiting.pop(key, None)
                if event is not None:
                    event.set()


async def raw_long_poll(
    client: httpx.AsyncClient, url: str, offset: str, on_items: OnItems
) -> None:
    """Baseline live reader: a long-poll loop from ``offset``, echoing the cursor."""
    cursor: str | None = None
    while True:
        extra = {"live": "long-poll"} if cursor is None else {"live": "long-poll", "cursor": cursor}
        response = check_status(await client.get(read_url(url, offset, **extra)), 200, 204)
        if response.status_code == 200:
            on_items(json.loads(response.content))
        offset = response.headers["stream-next-offset"]
        cursor = response.headers.get("stream-cursor", cursor)
        if response.headers.get("stream-closed", "").lower() == "true":
            return


#: The SDK variants of the live scenarios and the ``live=`` mode each one reads with.
SDK_MODES: dict[str, LiveMode] = {"sdk long-poll": "long-poll", "sdk sse": "sse"}


async def sdk_live(handle: StreamHandle, live: LiveMode, offset: str, on_items: OnItems) -> None:
    """SDK live reader from ``offset``, handing each batch's items over."""
    async with handle.stream(offset=offset, live=live) as response:
        async for batch in response:
            if batch.data:
                on_items(batch.items)


async def create_stream(writer: httpx.AsyncClient, url: str) -> str:
    """Create an empty JSON stream; its tail offset is where readers start. (Starting at
    ``now`` would race with the first append: a reader not yet connected would miss it.)"""
    created = check_status(await writer.put(url, headers={"content-type": JSON_TYPE}), 201)
    return created.headers["stream-next-offset"]


def message(key: int) -> bytes:
    return b'{"k":%d}' % key


async def _one_run(bench: Bench, variant: str, samples: int) -> list[float]:
    url = bench.new_url("tail")
    headers = {"content-type": JSON_TYPE}
    receipts = Receipts()
    latencies: list[float] = []
    stalled: int | None = None
    async with raw_client() as writer, raw_client() as reader_client:
        tail = await create_stream(writer, url)
        async with StreamHandle(url) as handle, anyio.create_task_group() as group:
            if variant == "raw long-poll":
                group.start_soon(raw_long_poll, reader_client, url, tail, receipts.record)
            else:
                group.start_soon(sdk_live, handle, SDK_MODES[variant], tail, receipts.record)
            for key in range(WARMUP_APPENDS + samples):
                await anyio.sleep(PACE_SECONDS)
                arrived = receipts.expect(key)
                start = time.perf_counter()
                check_status(await writer.post(url, content=message(key), headers=headers), 204)
                with anyio.move_on_after(RECEIPT_TIMEOUT):
                    await arrived.wait()
                if not arrived.is_set():
                    stalled = key
                    break
                if key >= WARMUP_APPENDS:
                    latencies.append(receipts.times[key] - start)
            group.cancel_scope.cancel()
        await writer.delete(url)
    if stalled is not None:
        raise RuntimeError(
            f"{variant}: append {stalled} did not reach the reader within {RECEIPT_TIMEOUT} s"
        )
    return latencies


async def tail_latency(bench: Bench) -> list[Row]:
    """5. Append -> receipt latency: SDK long-poll and SSE against a raw long-poll loop."""
    sizes = bench.sizes
    variants = ["sdk long-poll", "sdk sse", "raw long-poll"]
    found: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(sizes.rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            found[variant] += await _one_run(bench, variant, sizes.tail_samples)
    return live_rows("5 tail latency", found, p50_ratio=1.2)


def live_rows(scenario: str, found: dict[str, list[float]], p50_ratio: float | None) -> list[Row]:
    """p50/p99 rows (ms, all samples pooled): SDK long-poll and SDK SSE, each against
    the raw long-poll loop; SSE's target is to be no slower than the SDK's long-poll."""
    rows = []
    raw = found["raw long-poll"]
    lp = found["sdk long-poll"]
    sse = found["sdk sse"]
    for q in (50, 99):
        row = Row(
            f"{scenario}, long-poll",
            f"p{q}",
            "ms",
            percentile(lp, q) * 1000,
            percentile(raw, q) * 1000,
        )
        if q == 50 and p50_ratio is not None:
            row.target = f"<= {p50_ratio}x raw long-poll"
            row.met = row.ratio is not None and row.ratio <= p50_ratio
        rows.append(row)
    for q in (50, 99):
        row = Row(
            f"{scenario}, SSE",
            f"p{q}",
            "ms",
            percentile(sse, q) * 1000,
            percentile(raw, q) * 1000,
            note=f"SDK long-poll p{q}: {percentile(lp, q) * 1000:.2f} ms",
        )
        if q == 50:
            row.target = "<= SDK long-poll"
            row.met = percentile(sse, q) <= percentile(lp, q)
        rows.append(row)
    return rows
