"""Scenario 7: one append fanned out to many concurrent live readers in one process.

N readers tail one stream from its tail at creation: the SDK's readers all share one
handle (its own client, whose pool has no connection cap), the baseline's
readers share one plain httpx client. A first append proves every reader is
connected; then each timed append records, per reader, the time from just
before the POST to receipt. Reported: p50/p99 over all readers and appends,
reader errors, and sockets this process still holds once the readers are
closed and the client is closed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import anyio

from durable_streams import StreamHandle

from ._harness import JSON_TYPE, Bench, Row, check_status, open_sockets, raw_client
from ._live import (
    SDK_MODES,
    create_stream,
    live_rows,
    message,
    raw_long_poll,
    sdk_live,
)

#: Pause between appends, so the readers' next live requests are in flight again.
PACE_SECONDS = 0.3
#: Bound on one append reaching every reader (or on all readers connecting).
ALL_RECEIVED_TIMEOUT = 60.0


class FanoutReceipts:
    """Per message key: when each reader got it; an event once all ``readers`` have."""

    def __init__(self, readers: int) -> None:
        self.readers = readers
        self.times: dict[int, list[float]] = {}
        self.complete: dict[int, anyio.Event] = {}

    def expect(self, key: int) -> anyio.Event:
        self.times[key] = []
        event = self.complete[key] = anyio.Event()
        return event

    def record(self, items: Iterable[object]) -> None:
        now = time.perf_counter()
        for item in items:
            key = item["k"] if isinstance(item, dict) else None
            arrivals = self.times.get(key) if isinstance(key, int) else None
            if arrivals is None:
                continue
            arrivals.append(now)
            if len(arrivals) == self.readers:
                self.complete[key].set()  # type: ignore[index]


class Outcome:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.open_after_readers = 0
        self.left_open = 0


async def _one_run(bench: Bench, variant: str, readers: int, appends: int) -> Outcome:
    url = bench.new_url("fanout")
    headers = {"content-type": JSON_TYPE}
    outcome = Outcome()
    receipts = FanoutReceipts(readers)
    async with raw_client() as writer:
        tail = await create_stream(writer, url)
        sockets_before = open_sockets()
        handle = StreamHandle(url)
        client = raw_client()

        async def reader() -> None:
            try:
                if variant == "raw long-poll":
                    await raw_long_poll(client, url, tail, receipts.record)
                else:
                    await sdk_live(handle, SDK_MODES[variant], tail, receipts.record)
            except Exception as error:  # counted and reported, the others go on
                outcome.errors.append(repr(error)[:200])

        stalled: int | None = None
        async with anyio.create_task_group() as group:
            for _ in range(readers):
                group.start_soon(reader)
            for key in range(appends + 1):  # key 0: every reader is connected
                await anyio.sleep(PACE_SECONDS)
                everyone = receipts.expect(key)
                start = time.perf_counter()
                check_status(await writer.post(url, content=message(key), headers=headers), 204)
                with anyio.move_on_after(ALL_RECEIVED_TIMEOUT):
                    await everyone.wait()
                if not everyone.is_set():
                    stalled = key
                    break
                if key > 0:
                    outcome.latencies += [at - start for at in receipts.times[key]]
            group.cancel_scope.cancel()
        if stalled is not None:
            raise RuntimeError(
                f"{variant}: append {stalled} reached {len(receipts.times[stalled])} of "
                f"{readers} readers within {ALL_RECEIVED_TIMEOUT} s "
                f"(reader errors: {len(outcome.errors)}, first: {outcome.errors[:2]})"
            )
        outcome.open_after_readers = open_sockets() - sockets_before
        await handle.aclose()
        await client.aclose()
        outcome.left_open = open_sockets() - sockets_before
        await writer.delete(url)
    return outcome


async def fanout(bench: Bench) -> list[Row]:
    """7. Time for one append to reach N concurrent live readers: p50/p99."""
    sizes = bench.sizes
    readers = sizes.fanout_readers
    variants = ["sdk long-poll", "sdk sse", "raw long-poll"]
    outcomes: dict[str, Outcome] = {}
    for variant in variants:
        outcomes[variant] = await _one_run(bench, variant, readers, sizes.fanout_appends)
    rows = live_rows(
        f"7 fan-out {readers:,} readers", {v: o.latencies for v, o in outcomes.items()}, None
    )
    for variant in ("sdk long-poll", "sdk sse"):
        sdk, raw = outcomes[variant], outcomes["raw long-poll"]
        row = Row(
            f"7 fan-out {readers:,} readers, {variant.split()[-1]}",
            "errors / sockets left",
            "",
            len(sdk.errors) + sdk.left_open,
            len(raw.errors) + raw.left_open,
            target="0 errors, 0 sockets left",
            note=f"SDK: {len(sdk.errors)} errors, {sdk.open_after_readers} sockets open after "
            f"readers closed (pool), {sdk.left_open} after client closed; raw: "
            f"{len(raw.errors)} errors, {raw.open_after_readers} / {raw.left_open}",
        )
        row.met = not sdk.errors and sdk.left_open <= 0
        rows.append(row)
    return rows
