"""Sender unit tests: the pipeline window, renumbering into a new epoch, fencing.

A :class:`Sender` over a real :class:`Accumulator` and a respx-mocked server;
no reference server and no real sleeping.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
import respx

import durable_streams._retry
from durable_streams import RetryPolicy, StaleEpochError
from durable_streams._accumulator import Accumulator
from durable_streams._sender import GROW_AFTER, Sender
from durable_streams._transport import Transport

pytestmark = pytest.mark.anyio

URL = "http://streams.test/v1/stream/s"

Reply = Callable[[httpx.Request], httpx.Response]


def tuple_of(request: httpx.Request) -> tuple[int, int]:
    return int(request.headers["producer-epoch"]), int(request.headers["producer-seq"])


def accepted(request: httpx.Request) -> httpx.Response:
    epoch, seq = tuple_of(request)
    return httpx.Response(
        200,
        headers={
            "stream-next-offset": f"0000000000000000_{seq + 1:016d}",
            "producer-epoch": str(epoch),
            "producer-seq": str(seq),
        },
    )


class Rig:
    """An accumulator, a sender running in a task group, and the requests it made."""

    def __init__(self, router: respx.MockRouter, **options: object) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses: list[int] = []
        self.answer: Callable[[httpx.Request], httpx.Response] = accepted
        router.post(URL).mock(side_effect=lambda request: self._reply(request))
        self.accumulator = Accumulator(
            max_batch_bytes=1_000_000,
            max_batch_items=1,  # one item, one batch: easy to count
            max_buffered_bytes=10_000_000,
            notify=lambda: self.sender.notify(),
        )
        settings: dict[str, object] = {
            "epoch": 0,
            "auto_claim": False,
            "linger": 0.0,
            "max_in_flight": 5,
            "retry": RetryPolicy(initial_delay=0.001, max_delay=0.001, max_attempts=3),
            "on_error": None,
            "headers": None,
            "params": None,
            **options,
        }
        transport = Transport(URL, client=None, headers=None, params=None, timeout=5, retry=None)
        self.transport = transport
        self.sender = Sender(transport, self.accumulator, "p", **settings)  # type: ignore[arg-type]

    def _reply(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.answer(request)
        self.statuses.append(response.status_code)
        return response

    def tuples(self) -> list[tuple[int, int]]:
        return [tuple_of(r) for r in self.requests]

    def add(self, *items: bytes) -> None:
        for item in items:
            self.accumulator.add(item)

    async def settle(self) -> None:
        mark = self.accumulator.mark()
        with anyio.fail_after(5):
            await self.sender.wait_for(lambda: self.accumulator.settled_up_to(mark))


@asynccontextmanager
async def rig(**options: object) -> AsyncIterator[Rig]:
    with respx.mock(assert_all_called=False) as router:
        built = Rig(router, **options)
        built.accumulator.begin(json_mode=False)
        built.accumulator.set_accepting(True)
        built.sender.begin("application/octet-stream")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(built.sender.run, tasks)
            try:
                yield built
            finally:
                built.sender.stop()
        await built.transport.client.aclose()


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_sleep(seconds: float) -> None:
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(durable_streams._retry, "_sleep", fake_sleep)


def gap(expected: int) -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            409,
            headers={
                "producer-expected-seq": str(expected),
                "producer-received-seq": request.headers["producer-seq"],
            },
            text="gap",
        )

    return reply


async def test_the_window_starts_at_two_grows_while_clean_and_halves_on_a_gap() -> None:
    async with rig(max_in_flight=4) as r:
        assert r.sender.window == 2
        r.add(b"first")
        await r.settle()  # seq 0 goes alone and establishes the epoch
        r.add(*[b"x"] * (2 * GROW_AFTER))
        await r.settle()
        assert r.sender.window == 4  # one more per GROW_AFTER clean acks, up to max_in_flight
        r.add(*[b"y"] * (GROW_AFTER * 3))
        await r.settle()
        assert r.sender.window == 4  # never past max_in_flight

        # One gap: the batch waits for the earlier ones, is sent again, and the window halves.
        answers = [gap(0)]
        r.answer = lambda request: (answers.pop(0) if answers else accepted)(request)
        r.add(b"z")
        await r.settle()
        assert r.sender.window == 2
        assert r.sender.stats().sequence_gaps == 1
        assert r.tuples()[-2:] == [(0, r.sender.next_seq - 1)] * 2


async def test_a_failed_batch_renumbers_the_ones_behind_it_into_the_next_epoch() -> None:
    async with rig(epoch=3) as r:
        r.add(b"a")
        await r.settle()

        def reply(request: httpx.Request) -> httpx.Response:
            if request.content == b"bad":
                return httpx.Response(400, text="no")
            if tuple_of(request)[0] == 3 and request.content != b"a":
                return gap(1)(request)  # the hole at seq 1 stops every later seq of epoch 3
            return accepted(request)

        r.answer = reply
        r.add(b"bad", b"c", b"d")
        await r.settle()
        assert r.sender.epoch == 4
        stored = [
            (tuple_of(q), q.content)
            for q, status in zip(r.requests, r.statuses, strict=True)
            if status == 200
        ]
        assert stored == [((3, 0), b"a"), ((4, 0), b"c"), ((4, 1), b"d")]
        [(failure, _)] = r.accumulator.take_failures()
        assert (failure.epoch, failure.seq, failure.item_count) == (3, 1, 1)
        assert r.sender.stats().epoch_changes == 1


async def test_restart_epoch_starts_again_at_seq_zero() -> None:
    async with rig(epoch=7) as r:
        r.add(b"a", b"b")
        await r.settle()
        await r.sender.restart_epoch()
        assert (r.sender.epoch, r.sender.next_seq) == (8, 0)
        r.add(b"c")
        await r.settle()
    assert r.tuples() == [(7, 0), (7, 1), (8, 0)]


async def test_fencing_without_auto_claim_fails_this_and_every_later_batch() -> None:
    async with rig() as r:
        r.answer = lambda request: httpx.Response(403, headers={"producer-epoch": "9"}, text="")
        r.add(b"a", b"b", b"c")
        await r.settle()
        assert isinstance(r.accumulator.fatal, StaleEpochError)
        failures = r.accumulator.take_failures()
        assert [f.item_count for f, _ in failures] == [1, 1, 1]
        assert all(f.error is r.accumulator.fatal for f, _ in failures)
    assert len(r.requests) == 1  # the later batches failed without a request


async def test_auto_claim_renumbers_into_the_servers_epoch_plus_one() -> None:
    async with rig(auto_claim=True) as r:
        answers: list[Reply] = [lambda q: httpx.Response(403, headers={"producer-epoch": "9"})]
        r.answer = lambda request: (answers.pop(0) if answers else accepted)(request)
        r.add(b"a", b"b")
        await r.settle()
        assert r.accumulator.fatal is None
    assert r.tuples() == [(0, 0), (10, 0), (10, 1)]


async def test_run_returns_once_stopped_and_settled() -> None:
    async with rig() as r:
        r.add(b"a")
    assert r.sender.in_flight == 0
    assert r.accumulator.pending == 0
    assert r.tuples() == [(0, 0)]


def test_the_max_batch_items_default_is_no_limit() -> None:
    # The fast path in IdempotentProducer.append relies on this sentinel.
    acc = Accumulator(
        max_batch_bytes=10, max_batch_items=sys.maxsize, max_buffered_bytes=10, notify=lambda: None
    )
    acc.begin(json_mode=False)
    acc.set_accepting(True)
    acc.add(b"a")
    assert acc.fast_limit == 9
