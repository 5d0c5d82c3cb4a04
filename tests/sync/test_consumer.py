"""The sync Consumer, against the in-memory test server (in-process client).

It is the async consumer driven in lock step with the calling thread, so these
tests check what the lock step must preserve: an item counts as handled only
once the loop body (or handler) for it has finished, handlers run on the
calling thread, and ``on_error``, ``stop()``, deadlines and misuse behave as
in the async API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from durable_streams import (
    CommitEvery,
    FailureAction,
    ItemFailure,
    MemoryCheckpoints,
    Position,
    RequestTimeoutError,
    UsageError,
)
from durable_streams.sync import Consumer, StreamHandle, fail_after
from durable_streams.sync._portal import run_sync
from durable_streams.testing import InMemoryServer

JSON = "application/json"


class Boom(Exception):
    pass


@pytest.fixture
def handle(ds_client: httpx.AsyncClient, ds_stream_url: str) -> Iterator[StreamHandle]:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        handle.append_many([{"n": n} for n in range(10)])
        yield handle


def consumer(handle: StreamHandle, store: MemoryCheckpoints, **options: Any) -> Consumer:
    options.setdefault("commit_every", CommitEvery(items=1, seconds=None))
    return Consumer(handle, name="c", checkpoints=store, **options)


def resume_at(handle: StreamHandle, store: MemoryCheckpoints) -> int | None:
    """The first item a new consumer with ``store`` is handed (None: nothing left)."""
    with consumer(handle, store) as again:
        item = next(again.iter_json(), None)
    return None if item is None else int(item["n"])


def test_an_item_counts_only_once_its_body_finished(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    with consumer(handle, store) as c:
        for item in c.iter_json():
            # Inside the body: nothing read ahead, the committed position is before this item.
            if c.committed is None:
                assert item["n"] == 0
            else:
                assert resume_at_position(handle, c.committed) == item["n"]
            if item["n"] == 4:
                break  # 4 is not handled
    assert resume_at(handle, store) == 4


def resume_at_position(handle: StreamHandle, position: Position) -> int:
    with handle.stream(offset=position) as res:
        return int(next(res.iter_json())["n"])


def test_an_error_in_the_body_leaves_its_item_unhandled(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()

    def fail_at_6(c: Consumer) -> None:
        for item in c.iter_json():
            if item["n"] == 6:
                raise Boom

    with consumer(handle, store) as c, pytest.raises(Boom):
        fail_at_6(c)
    assert resume_at(handle, store) == 6


def test_stop_ends_after_the_current_item(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    seen = []
    with consumer(handle, store, commit_every=CommitEvery(items=1000, seconds=None)) as c:
        for item in c.iter_json():
            seen.append(item["n"])
            if item["n"] == 2:
                c.stop()
    assert seen == [0, 1, 2]
    assert resume_at(handle, store) == 3  # saved when the loop ended


def test_iter_batches_hands_lists(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    with consumer(handle, store) as c:
        batches = [[item["n"] for item in batch] for batch in c.iter_batches(4)]
    assert [n for batch in batches for n in batch] == list(range(10))
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert resume_at(handle, store) is None


def test_run_calls_the_handler_on_the_calling_thread(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    threads = set()
    seen = []

    def record(item: dict[str, int]) -> None:
        threads.add(threading.get_ident())
        seen.append(item["n"])

    with consumer(handle, store) as c:
        c.run(record)
    assert seen == list(range(10))
    assert threads == {threading.get_ident()}
    assert resume_at(handle, store) is None


def test_run_applies_on_error(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    failures: list[tuple[int, int]] = []
    calls: list[int] = []

    def flaky(item: dict[str, int]) -> None:
        calls.append(item["n"])
        if item["n"] in (3, 7):
            raise Boom(item["n"])

    def decide(failure: ItemFailure) -> FailureAction:
        assert isinstance(failure.error, Boom)
        failures.append((failure.item["n"], failure.attempt))
        return FailureAction.RETRY if failure.attempt < 2 else FailureAction.SKIP

    with consumer(handle, store, on_error=decide) as c:
        c.run(flaky)
    assert failures == [(3, 1), (3, 2), (7, 1), (7, 2)]
    assert calls == [0, 1, 2, 3, 3, 4, 5, 6, 7, 7, 8, 9]
    assert resume_at(handle, store) is None


def test_run_raises_the_handlers_error_and_keeps_what_completed(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()

    def bill(items: list[dict[str, int]]) -> None:
        if any(item["n"] == 5 for item in items):
            raise Boom("no money")

    with consumer(handle, store) as c, pytest.raises(Boom, match="no money"):
        c.run_batches(bill, max_items=1)
    assert resume_at(handle, store) == 5


def test_a_deadline_ends_a_live_wait_and_what_completed_is_saved(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    seen: list[int] = []
    policy = CommitEvery(items=1000, seconds=None)  # saves only when waiting or ending
    with consumer(handle, store, live="long-poll", commit_every=policy) as c:
        with pytest.raises(RequestTimeoutError), fail_after(0.5):
            seen.extend(item["n"] for item in c.iter_json())
        assert seen == list(range(10))
        handle.append({"n": 10})
        more = c.iter_json()
        assert next(more)["n"] == 10
        c.stop()
        assert next(more, None) is None
    assert resume_at(handle, store) is None


def test_misuse_is_a_usage_error(handle: StreamHandle, ds_server: InMemoryServer) -> None:
    store = MemoryCheckpoints()
    c = consumer(handle, store)
    with pytest.raises(UsageError):
        c.iter_json()  # not open
    with c:
        first = c.iter_json()
        assert next(first)["n"] == 0
        with pytest.raises(UsageError, match="one iteration at a time"):
            c.iter_json()
        first.close()
        assert [item["n"] for item in c.iter_json()] == list(range(10))  # 0 was not handled
    with pytest.raises(UsageError):
        Consumer(handle.async_handle, name="c", checkpoints=store)  # type: ignore[arg-type]


def test_closing_a_suspended_iteration_ends_it_quietly(handle: StreamHandle) -> None:
    store = MemoryCheckpoints()
    with consumer(handle, store) as c:
        items = c.iter_json()
        assert next(items)["n"] == 0
        assert next(items)["n"] == 1  # 0 handled; 1 in its body
        c.close()  # e.g. from a signal handler or a finally elsewhere
        assert next(items, None) is None  # over, not an error
    assert resume_at(handle, store) == 1


def test_a_generator_closed_on_the_loop_thread_does_not_block_the_loop(
    handle: StreamHandle,
) -> None:
    """The garbage collector may finalize a suspended iterator on the loop thread."""
    store = MemoryCheckpoints()
    with consumer(handle, store) as c:
        items = c.iter_json()
        assert next(items)["n"] == 0
        closer = threading.Thread(target=run_sync, args=(items.close,))
        closer.start()
        closer.join(timeout=5)  # a bound on a hang (STOP_TIMEOUT is 10 s), not a speed check
        assert not closer.is_alive()
        assert handle.head().content_type == JSON  # the loop still serves calls
