"""Producer identity across processes, concurrent writers, and unparsable items.

Every test reads the stream back and checks each event once, in order:

- a producer *process* run three times in a row with one id (default options,
  and with ``auto_claim=True``), and one SIGKILLed mid-run then restarted:
  nothing acknowledged is lost and nothing is stored twice;
- two live producers with one id: at least one fails, within a bounded
  number of requests, and every event is either stored once or reported;
- an unparsable pre-serialised item at the start, middle or end of a
  pipelined batch fails alone.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from durable_streams import (
    BatchFailure,
    DurableStreamError,
    IdempotentProducer,
    InvalidItemError,
    ProducerFlushError,
    StreamHandle,
)

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("producer_child.py")
ROOT = Path(__file__).resolve().parents[2]


async def read_events(url: str) -> list[Any]:
    items: list[Any] = []
    offset = "-1"
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(url, params={"offset": offset})
            assert response.status_code == 200, response.text
            items.extend(json.loads(response.content))
            offset = response.headers["stream-next-offset"]
            if "stream-up-to-date" in response.headers:
                return items


def child_command(url: str, run: int, count: int, backend: str, *flags: str) -> list[str]:
    return [sys.executable, str(CHILD), url, str(run), str(count), backend, *flags]


async def run_child(
    url: str, run: int, count: int, backend: str, *flags: str
) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(30):
        return await anyio.run_process(
            child_command(url, run, count, backend, *flags), check=False, cwd=ROOT
        )


def runs_of(events: list[Any]) -> dict[int, list[int]]:
    """The ``n`` of each run's events, in stream order."""
    runs: dict[int, list[int]] = {}
    for event in events:
        runs.setdefault(event["run"], []).append(event["n"])
    return runs


# -- restarts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("--auto-claim",)], ids=["defaults", "auto_claim"])
async def test_a_process_run_three_times_with_one_id_stores_every_run(
    stream_url: str, anyio_backend: str, flags: tuple[str, ...]
) -> None:
    count = 120
    for run in range(3):
        done = await run_child(stream_url, run, count, anyio_backend, *flags)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"stored={count} duplicate=0 failed=0" in done.stdout.decode()
    assert runs_of(await read_events(stream_url)) == {run: list(range(count)) for run in range(3)}


async def test_a_fixed_epoch_without_auto_claim_reports_the_conflict_instead_of_losing_data(
    stream_url: str, anyio_backend: str
) -> None:
    # The old default (epoch 0 every run): the second run must fail loudly.
    first = await run_child(stream_url, 0, 60, anyio_backend, "--epoch", "0")
    assert first.returncode == 0, first.stderr
    second = await run_child(stream_url, 1, 60, anyio_backend, "--epoch", "0")
    assert second.returncode == 3, second.stdout + second.stderr
    lines = second.stdout.decode().splitlines()
    assert lines[0] == "failed 0 10 ProducerIdentityError"  # its first batch, reported
    assert runs_of(await read_events(stream_url)) == {0: list(range(60))}
    # With auto_claim the same fixed epoch moves on and the run lands, exactly once.
    third = await run_child(stream_url, 2, 60, anyio_backend, "--epoch", "0", "--auto-claim")
    assert third.returncode == 0, third.stdout + third.stderr
    assert runs_of(await read_events(stream_url)) == {0: list(range(60)), 2: list(range(60))}


async def _wait_for_acked(stdout: BufferedByteReceiveStream, at_least: int) -> int:
    while True:
        line = (await stdout.receive_until(b"\n", 1000)).decode()
        if line.startswith("acked ") and int(line.split()[1]) >= at_least:
            return int(line.split()[1])


async def test_a_sigkilled_producer_restarts_without_loss_or_duplicates(
    stream_url: str, anyio_backend: str
) -> None:
    command = child_command(stream_url, 0, 1_000_000, anyio_backend)
    with anyio.fail_after(30):
        async with await anyio.open_process(command, cwd=ROOT) as process:
            assert process.stdout is not None
            acked = await _wait_for_acked(BufferedByteReceiveStream(process.stdout), 300)
            process.kill()  # SIGKILL: no flush, no cleanup, batches in flight
            await process.wait()
        assert process.returncode == -9
    restarted = await run_child(stream_url, 1, 100, anyio_backend)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    runs = runs_of(await read_events(stream_url))
    killed = runs[0]
    assert killed == list(range(len(killed)))  # in order, no gap, nothing twice
    assert len(killed) >= acked  # everything acknowledged before the kill is there
    assert runs[1] == list(range(100))


# -- two live writers with one id ----------------------------------------------------------------


class Writer:
    """One of two producers sharing an id; counts its requests and what was reported."""

    def __init__(self, url: str, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.requests = 0
        self.reported: set[int] = set()  # append indexes (= n) failed or refused
        self.errors: list[DurableStreamError] = []
        self.client = httpx.AsyncClient(event_hooks={"request": [self._count]})
        self.handle = StreamHandle(url, client=self.client)

    async def _count(self, request: httpx.Request) -> None:
        if request.method == "POST":
            self.requests += 1

    def on_error(self, error: DurableStreamError, failure: BatchFailure) -> None:
        self.errors.append(error)
        first = failure.first_index
        self.reported.update(range(first, first + failure.item_count))

    async def run(self, options: dict[str, Any], start: anyio.Event) -> None:
        producer = IdempotentProducer(
            self.handle, "shared-id", max_batch_items=10, on_error=self.on_error, **options
        )
        async with self.handle, self.client:
            try:
                async with producer:
                    await start.wait()
                    for n in range(self.count):
                        try:
                            producer.append({"w": self.name, "n": n})
                        except DurableStreamError as error:  # fenced: refused at append
                            self.errors.append(error)
                            self.reported.update(range(n, self.count))
                            break
                        if n % 20 == 19:
                            with contextlib.suppress(ProducerFlushError):
                                await producer.flush()  # failures also went to on_error
            except ProducerFlushError:
                pass  # every failure also went to on_error


@pytest.mark.parametrize(
    "options",
    [{}, {"epoch": 0, "auto_claim": True}],
    ids=["defaults", "fixed_epoch_auto_claim"],
)
async def test_two_live_producers_with_one_id_fail_loudly_never_silently(
    stream_url: str, options: dict[str, Any]
) -> None:
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
    count = 300
    writers = [Writer(stream_url, name, count) for name in ("a", "b")]
    start = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            for writer in writers:
                tasks.start_soon(writer.run, options, start)
            await anyio.wait_all_tasks_blocked()
            start.set()
    assert any(writer.errors for writer in writers)
    events = await read_events(stream_url)
    for writer in writers:
        stored = [e["n"] for e in events if e["w"] == writer.name]
        assert stored == sorted(set(stored))  # in order, nothing twice
        assert not set(stored) & writer.reported  # reported events were not stored
        assert set(stored) | writer.reported == set(range(count))  # nothing lost silently
        # Bounded: one request per batch of 10, plus a few for conflicts and claims.
        assert writer.requests <= count // 10 + 4


# -- unparsable items ------------------------------------------------------------------------------


@pytest.fixture
async def json_handle(stream_url: str) -> AsyncIterator[StreamHandle]:
    async with StreamHandle(stream_url) as created:
        await created.create(content_type="application/json")
        yield created


@pytest.mark.parametrize("position", [0, 5, 9], ids=["start", "middle", "end"])
async def test_an_unparsable_item_fails_alone_with_pipelining(
    json_handle: StreamHandle, position: int
) -> None:
    bad = 20 + position  # in the third batch of 10
    reported: list[tuple[DurableStreamError, BatchFailure]] = []
    async with IdempotentProducer(
        json_handle,
        "p",
        max_batch_items=10,
        max_in_flight=5,
        linger_ms=10_000,
        on_error=lambda error, failure: reported.append((error, failure)),
    ) as producer:
        first_epoch = producer.epoch
        for n in range(60):
            producer.append(b'{"broken": ' if n == bad else {"n": n})
        with pytest.raises(ProducerFlushError) as raised:
            await producer.flush()
        assert producer.epoch == first_epoch  # the batch kept its seq: no renumbering
        stats = producer.stats
    [failure] = raised.value.failures
    assert (failure.first_index, failure.item_count) == (bad, 1)
    assert isinstance(failure.error, InvalidItemError)
    assert failure.error.index == bad
    assert f"item {bad} is not valid JSON" in str(failure.error)
    assert reported == [(failure.error, failure)]
    assert (stats.stored_messages, stats.failed_messages, stats.duplicate_messages) == (59, 1, 0)
    assert await read_events(json_handle.url) == [{"n": n} for n in range(60) if n != bad]


async def test_send_raises_for_its_own_unparsable_item_only(json_handle: StreamHandle) -> None:
    async with IdempotentProducer(json_handle, "p", linger_ms=50) as producer:
        for n in range(100):
            producer.append({"n": n})
        async with anyio.create_task_group() as tasks:

            async def good() -> None:
                ack = await producer.send({"n": "last"})
                assert ack.offset is not None

            tasks.start_soon(good)
            with pytest.raises(InvalidItemError) as raised:
                await producer.send('{"broken": ')
            assert raised.value.index == 100
        await producer.flush()  # send() raised the only failure: nothing left to list
    events = await read_events(json_handle.url)
    assert events[:100] == [{"n": n} for n in range(100)]
    assert events[100:] == [{"n": "last"}]
