"""Accumulator unit tests: cutting, buffer accounting and waiters, with no event loop.

The accumulator does no I/O and creates no anyio objects, so these tests are
plain synchronous functions: state changes are observed through the ``notify``
callback, waiters through their ``wake`` callback.
"""

from __future__ import annotations

import sys

import httpx
import pytest

from durable_streams import (
    BadRequestError,
    EmptyAppendError,
    InvalidArgumentError,
    ProducerAck,
    ProducerBufferFullError,
    ProducerClosedError,
)
from durable_streams._accumulator import Accumulator, ProducerBatch, Waiter


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def make(
    *,
    max_batch_bytes: int = 1000,
    max_batch_items: int = sys.maxsize,
    max_buffered_bytes: int = 10_000,
    json_mode: bool = False,
) -> tuple[Accumulator, Recorder]:
    notify = Recorder()
    acc = Accumulator(
        max_batch_bytes=max_batch_bytes,
        max_batch_items=max_batch_items,
        max_buffered_bytes=max_buffered_bytes,
        notify=notify,
    )
    acc.begin(json_mode=json_mode)
    acc.set_accepting(True)
    return acc, notify


def drain(acc: Accumulator) -> list[ProducerBatch]:
    batches = []
    while (batch := acc.next_batch()) is not None:
        batches.append(batch)
    return batches


def ok() -> httpx.Response:
    return httpx.Response(200, headers={"stream-next-offset": "0000000000000000_0000000000000001"})


def test_batches_are_cut_when_the_next_item_would_pass_max_batch_bytes() -> None:
    acc, _ = make(max_batch_bytes=10)
    for item in (b"aaaa", b"bbbb", b"cc", b"dddd"):
        acc.add(item)
    # 4 + 4 + 2 = 10 reaches the limit: cut; "dddd" opens the next batch.
    assert [b.body for b in drain(acc)] == [b"aaaabbbbcc"]
    assert acc.items == [b"dddd"]
    assert acc.open_bytes == 4


def test_json_bodies_are_arrays_and_open_bytes_is_their_length() -> None:
    acc, _ = make(max_batch_bytes=12, json_mode=True)
    acc.add(b"1")
    acc.add(b'"ab"')
    assert acc.open_bytes == len(b'[1,"ab"]')
    acc.add(b"[1,2]")  # 8 + 6 = 14 > 12: cut first
    [batch] = drain(acc)
    assert batch.body == b'[1,"ab"]'
    assert batch.counted_bytes == len(batch.body)
    assert acc.mark() == 2  # the open batch is cut too
    assert [b.body for b in drain(acc)] == [b"[[1,2]]"]


def test_batches_are_cut_at_max_batch_items() -> None:
    acc, _ = make(max_batch_items=3)
    for n in range(7):
        acc.add(b"%d" % n)
    assert [(b.body, b.item_count) for b in drain(acc)] == [(b"012", 3), (b"345", 3)]
    assert acc.items == [b"6"]


def test_an_oversized_item_goes_alone() -> None:
    acc, _ = make(max_batch_bytes=10)
    acc.add(b"small")
    acc.add(b"L" * 50)
    acc.add(b"tail")
    acc.cut()
    assert [b.body for b in drain(acc)] == [b"small", b"L" * 50, b"tail"]


def test_the_buffer_limit_is_exact_and_empty_items_are_refused() -> None:
    acc, _ = make(max_batch_bytes=8, max_buffered_bytes=20)
    acc.add(b"x" * 8)  # cut at once
    acc.add(b"y" * 8)  # cut at once
    assert acc.buffered_bytes == 16
    assert acc.has_room(4)
    assert not acc.has_room(5)
    with pytest.raises(ProducerBufferFullError):
        acc.add(b"z" * 5)
    acc.add(b"z" * 4)
    assert acc.buffered_bytes == 20
    with pytest.raises(EmptyAppendError):
        acc.add(b"")


def test_settling_frees_the_buffer_and_the_pending_count() -> None:
    acc, _ = make(max_batch_bytes=4, max_buffered_bytes=12)
    for item in (b"aaaa", b"bbbb", b"cc"):
        acc.add(item)
    assert (acc.pending, acc.buffered_bytes) == (3, 10)
    first, second = drain(acc)
    mark = acc.mark()
    assert not acc.settled_up_to(mark)
    acc.complete(first, ok(), None)
    assert (acc.pending, acc.buffered_bytes) == (2, 6)
    failure = acc.fail(second, BadRequestError("no", status=400))
    assert (failure.item_count, failure.byte_count) == (1, 4)
    assert acc.is_settled(first)
    assert acc.is_settled(second)
    assert not acc.settled_up_to(mark)  # "cc" was cut by mark() and is still pending
    [last] = drain(acc)
    acc.complete(last, ok(), None)
    assert acc.settled_up_to(mark)
    assert (acc.pending, acc.buffered_bytes) == (0, 0)
    [(recorded, waiters)] = acc.take_failures()
    assert recorded is failure
    assert waiters == []
    assert acc.take_failures() == []


def test_waiters_are_attached_to_the_batch_holding_their_item() -> None:
    acc, _ = make(max_batch_bytes=6)
    woken: list[str] = []
    acc.add(b"aaa")
    open_waiter = Waiter(lambda: woken.append("open"))
    acc.attach_waiter(open_waiter)
    acc.add(b"bbb")  # reaches 6: the batch is cut with the item in it
    cut_waiter = Waiter(lambda: woken.append("cut"))
    acc.attach_waiter(cut_waiter)  # its item is in the batch just cut, not the open one
    acc.add(b"c")
    late = Waiter(lambda: woken.append("late"))
    acc.attach_waiter(late)
    first = acc.next_batch()
    assert first is not None
    assert first.waiters == [open_waiter, cut_waiter]
    ack = ProducerAck(offset="o", duplicate=False, epoch=0, seq=0)
    acc.complete(first, ok(), ack)
    assert woken == ["open", "cut"]
    assert open_waiter.ack is ack
    assert cut_waiter.ack is ack
    error = ProducerClosedError("gone")
    acc.abandon(error)  # the open batch's waiter hears it too
    assert woken == ["open", "cut", "late"]
    assert late.error is error
    assert acc.fatal is error


def test_notify_fires_on_the_first_item_cuts_and_settles() -> None:
    acc, notify = make(max_batch_bytes=6)
    acc.add(b"aa")  # first item: the sender starts the linger timer
    assert notify.calls == 1
    acc.add(b"bb")  # nothing to announce
    assert notify.calls == 1
    acc.add(b"cc")  # cut
    assert notify.calls == 2
    batch = acc.next_batch()
    assert batch is not None
    acc.complete(batch, ok(), None)
    assert notify.calls == 3


def test_fast_limit_allows_only_what_add_would_do_without_checks() -> None:
    acc, _ = make(max_batch_bytes=10, max_buffered_bytes=15)
    assert acc.fast_limit == -1  # an empty open batch needs add() (linger timer)
    acc.add(b"aaaaaaaaaa")  # cut: 10 bytes queued
    acc.add(b"b")
    assert acc.fast_limit == 5  # the buffer's room, below max_batch_bytes - 1
    batch = acc.next_batch()
    assert batch is not None
    acc.complete(batch, ok(), None)
    assert acc.fast_limit == 9  # max_batch_bytes - 1: reaching the limit cuts
    acc.set_accepting(False)
    assert acc.fast_limit == -1
    acc.set_accepting(True)
    acc.set_fatal(ProducerClosedError("x"))
    assert acc.fast_limit == -1
    limited, _ = make(max_batch_items=5)
    limited.add(b"a")
    assert limited.fast_limit == -1  # item counts are checked by add()


def test_requeued_batches_go_first_in_append_order() -> None:
    acc, _ = make(max_batch_items=1)
    for n in range(4):
        acc.add(b"%d" % n)
    b0, b1, b2, _ = drain(acc)
    acc.requeue_first([b2, b0])
    acc.requeue_first([b1])
    assert [b.body for b in drain(acc)] == [b"1", b"0", b"2"]
    close = acc.enqueue_close(None)
    assert (close.close, close.item_count) == (True, 0)
    assert acc.pending == 4  # a close request is not an item


# -- groups: items that must travel in one batch ---------------------------------------------


def test_a_group_that_does_not_fit_the_open_batch_starts_the_next_one_whole() -> None:
    acc, _ = make(max_batch_bytes=20, json_mode=True)
    acc.add(b"1111111")  # open: [1111111] = 9 bytes
    acc.add_group([b"22", b"33", b"44444444"])  # 3 + 3 + 9 = 15 more: 24 > 20
    acc.add(b"5")
    acc.cut()
    assert [batch.body for batch in drain(acc)] == [b"[1111111]", b"[22,33,44444444,5]"]


def test_items_after_a_group_never_split_it() -> None:
    acc, _ = make(max_batch_bytes=10)
    acc.add_group([b"aaa", b"bbb"])
    for item in (b"c", b"dddd"):  # 6 + 1 = 7; + 4 = 11 > 10: "dddd" starts a batch
        acc.add(item)
    acc.cut()
    assert [batch.items for batch in drain(acc)] == [[b"aaa", b"bbb", b"c"], [b"dddd"]]


def test_a_group_filling_the_batch_is_cut_at_once() -> None:
    acc, notify = make(max_batch_bytes=10, max_batch_items=3)
    acc.add_group([b"a", b"b", b"c"])
    [batch] = drain(acc)
    assert batch.items == [b"a", b"b", b"c"]
    assert notify.calls >= 1


@pytest.mark.parametrize(
    ("group", "max_bytes", "max_items"),
    [
        ([b"12345", b"678901"], 10, sys.maxsize),  # 11 bytes
        ([b"1", b"2", b"3"], 1000, 2),
    ],
)
def test_a_group_no_batch_can_hold_is_refused_and_nothing_is_added(
    group: list[bytes], max_bytes: int, max_items: int
) -> None:
    acc, _ = make(max_batch_bytes=max_bytes, max_batch_items=max_items)
    acc.add(b"x")
    with pytest.raises(InvalidArgumentError, match="one batch"):
        acc.add_group(group)
    assert acc.items == [b"x"]
    assert acc.pending == 1


def test_a_group_the_buffer_cannot_take_is_refused_whole() -> None:
    acc, _ = make(max_batch_bytes=100, max_buffered_bytes=10)
    acc.add(b"1234")
    with pytest.raises(ProducerBufferFullError):
        acc.add_group([b"abc", b"defg"])  # 4 + 7 > 10
    acc.add_group([b"abc", b"de"])  # 4 + 5 <= 10
    assert acc.items == [b"1234", b"abc", b"de"]
    with pytest.raises(EmptyAppendError):
        acc.add_group([])
    with pytest.raises(EmptyAppendError):
        acc.add_group([b"a", b""])
    assert acc.items == [b"1234", b"abc", b"de"]
