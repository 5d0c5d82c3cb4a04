"""Consumer against the reference server: commit after handle, commit policies, ending
(clean, stop, break, errors, cancellation), failure policy, rejected positions,
batches and exactly-once effects with SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest

from durable_streams import (
    CheckpointKey,
    CommitEvery,
    Consumer,
    FailureAction,
    ItemFailure,
    MemoryCheckpoints,
    Position,
    PositionRejectedError,
    SQLiteCheckpoints,
    StreamHandle,
    UsageError,
    ValidationError,
)
from durable_streams import _consumer as consumer_module
from tests.server.harness import ReferenceServer

pytestmark = pytest.mark.anyio

NEVER = CommitEvery(items=None, seconds=None)


class RecordingStore(MemoryCheckpoints):
    """Remembers every save, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[Position] = []

    async def save(self, key: CheckpointKey, position: Position) -> None:
        await super().save(key, position)
        self.saved.append(position)


async def filled(url: str, count: int, *, start: int = 0) -> StreamHandle:
    handle = StreamHandle(url)
    await handle.create(content_type="application/json")
    if count:
        await handle.append_many([{"n": n} for n in range(start, start + count)])
    return handle


async def read_all(handle: StreamHandle, store: Any, name: str = "c") -> list[int]:
    seen: list[int] = []
    async with Consumer(handle, name=name, checkpoints=store) as consumer:
        async for item in consumer.iter_json():
            seen.append(item["n"])
    return seen


async def test_every_item_once_and_the_end_is_committed(stream_url: str) -> None:
    store = RecordingStore()
    async with await filled(stream_url, 250) as handle:
        assert await read_all(handle, store) == list(range(250))
        tail = (await handle.head()).next_offset
        assert store.saved[-1] == Position(str(tail))
        await handle.append_many([{"n": n} for n in range(250, 260)])
        assert await read_all(handle, store) == list(range(250, 260))
        assert await read_all(handle, store) == []


async def test_commits_every_n_items_moving_forward_only(stream_url: str) -> None:
    store = RecordingStore()
    async with await filled(stream_url, 35) as handle:
        policy = CommitEvery(items=10, seconds=None)
        async with Consumer(handle, name="c", checkpoints=store, commit_every=policy) as consumer:
            seen = [item["n"] async for item in consumer.iter_json()]
            assert consumer.caught_up
    assert seen == list(range(35))
    # One response holds all 35 items: positions inside it, then its end.
    assert store.saved[:3] == [Position("-1", 10), Position("-1", 20), Position("-1", 30)]
    assert len(store.saved) == 4
    assert store.saved[3].skip == 0
    assert store.saved[3].offset != "-1"


async def test_commits_every_n_seconds(stream_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(consumer_module, "_clock", lambda: now[0])
    store = RecordingStore()
    async with await filled(stream_url, 20) as handle:
        policy = CommitEvery(items=None, seconds=5)
        async with Consumer(handle, name="c", checkpoints=store, commit_every=policy) as consumer:
            async for item in consumer.iter_json():
                if item["n"] in (3, 11):
                    now[0] += 6  # the body for this item took 6 s
    assert store.saved[:2] == [Position("-1", 4), Position("-1", 12)]


async def test_an_error_in_the_loop_body_commits_what_completed(stream_url: str) -> None:
    store = RecordingStore()
    async with await filled(stream_url, 20) as handle:

        async def fail_at_5() -> None:
            async with Consumer(handle, name="c", checkpoints=store, commit_every=NEVER) as c:
                async for item in c.iter_json():
                    if item["n"] == 5:
                        raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await fail_at_5()
        assert store.saved == [Position("-1", 5)]  # items 0-4 done, 5 is not
        assert await read_all(handle, store) == list(range(5, 20))


async def test_break_leaves_the_item_unhandled_and_stop_ends_after_it(stream_url: str) -> None:
    store = RecordingStore()
    async with await filled(stream_url, 20) as handle:
        async with Consumer(handle, name="c", checkpoints=store, commit_every=NEVER) as c:
            async for item in c.iter_json():
                if item["n"] == 3:
                    break
        assert store.saved == [Position("-1", 3)]
        async with Consumer(handle, name="c", checkpoints=store, commit_every=NEVER) as c:
            async for item in c.iter_json():
                assert item["n"] >= 3
                if item["n"] == 8:
                    c.stop()
            assert c.position == Position("-1", 9)
        assert store.saved[-1] == Position("-1", 9)


async def test_cancellation_commits_what_completed(stream_url: str) -> None:
    store = RecordingStore()
    in_body = anyio.Event()
    async with await filled(stream_url, 20) as handle:

        async def work() -> None:
            async with Consumer(handle, name="c", checkpoints=store, commit_every=NEVER) as c:
                async for item in c.iter_json():
                    if item["n"] == 7:
                        in_body.set()
                        await anyio.sleep_forever()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(work)
                await in_body.wait()
                tasks.cancel_scope.cancel()
        assert store.saved == [Position("-1", 7)]
        assert (await read_all(handle, store))[0] == 7


async def test_a_live_consumer_commits_before_waiting(stream_url: str) -> None:
    store = RecordingStore()
    got = anyio.Event()
    async with await filled(stream_url, 5) as handle:
        policy = CommitEvery(items=1000, seconds=None)

        async def follow() -> None:
            async with Consumer(
                handle, name="c", checkpoints=store, live="long-poll", commit_every=policy
            ) as c:
                async for item in c.iter_json():
                    if item["n"] == 4:
                        got.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(follow)
                await got.wait()
                # The consumer is now waiting for live data: its position is saved.
                while not store.saved:
                    await anyio.wait_all_tasks_blocked()
                assert store.saved == [Position(str((await handle.head()).next_offset))]
                tasks.cancel_scope.cancel()


async def test_run_with_on_error_skip_retry_stop(stream_url: str) -> None:
    store = RecordingStore()
    failures: list[tuple[int, int]] = []
    handled: list[int] = []

    def on_error(failure: ItemFailure) -> FailureAction:
        failures.append((failure.item["n"], failure.attempt))
        if failure.item["n"] == 2:
            return FailureAction.SKIP
        if failure.item["n"] == 4 and failure.attempt < 3:
            return FailureAction.RETRY
        return FailureAction.STOP

    async def handler(item: dict[str, int]) -> None:
        n = item["n"]
        if n == 2 or (n == 4 and len(failures) < 3) or n == 6:
            raise ValueError(f"cannot handle {n}")
        handled.append(n)

    async with await filled(stream_url, 10) as handle:
        with pytest.raises(ValueError, match="cannot handle 6"):
            async with Consumer(
                handle, name="c", checkpoints=store, on_error=on_error, commit_every=NEVER
            ) as consumer:
                await consumer.run(handler)
    assert failures == [(2, 1), (4, 1), (4, 2), (6, 1)]
    assert handled == [0, 1, 3, 4, 5]
    assert store.saved == [Position("-1", 6)]  # 2 skipped counts as handled; 6 does not


class Item(pydantic.BaseModel):
    n: int


async def test_items_that_do_not_validate_go_to_on_error(stream_url: str) -> None:
    store = RecordingStore()
    async with await filled(stream_url, 3) as handle:
        await handle.append({"n": "not a number"})
        await handle.append({"n": 3})
        async with Consumer(
            handle, name="c", checkpoints=store, on_error=lambda f: FailureAction.SKIP
        ) as consumer:
            assert [item.n async for item in consumer.iter_json(model=Item)] == [0, 1, 2, 3]
        async with Consumer(handle, name="strict", checkpoints=store) as consumer:
            with pytest.raises(ValidationError):
                async for _item in consumer.iter_json(model=Item):
                    pass
        assert store.positions[CheckpointKey.for_stream("strict", stream_url)] == Position("-1", 3)


async def test_batches_are_bounded_and_end_with_their_response(stream_url: str) -> None:
    store = RecordingStore()
    async with await filled(stream_url, 25) as handle:
        await handle.append_many([{"n": n} for n in range(25, 30)])
        sizes: list[int] = []
        positions: list[Position] = []
        async with Consumer(handle, name="c", checkpoints=store, commit_every=NEVER) as c:
            async for batch in c.iter_batches(10, model=Item):
                sizes.append(len(batch))
                positions.append(c.position)
        # The catch-up answers with all 30 items in one response: 10, 10, 10.
        assert sum(sizes) == 30
        assert max(sizes) <= 10
        assert positions[0] == Position("-1", 10)
        assert store.saved == [positions[-1]]
        handled: list[int] = []

        async def insert_many(items: list[dict[str, int]]) -> None:
            handled.extend(item["n"] for item in items)

        await handle.append_many([{"n": n} for n in range(30, 33)])
        async with Consumer(handle, name="c", checkpoints=store) as c:
            await c.run_batches(insert_many, max_items=2)
        assert handled == [30, 31, 32]


async def test_a_refused_position_is_typed_and_seek_restarts(
    stream_url: str, faults: ReferenceServer
) -> None:
    store = MemoryCheckpoints()
    key = CheckpointKey.for_stream("c", stream_url)
    async with await filled(stream_url, 4) as handle:
        await store.save(key, Position("not-an-offset"))  # not one the server issued
        async with Consumer(handle, name="c", checkpoints=store) as consumer:
            with pytest.raises(PositionRejectedError) as caught:
                async for _item in consumer.iter_json():
                    pass
            assert caught.value.consumer == "c"
            assert "seek" in str(caught.value)
            assert await consumer.seek("-1") == Position("-1")
            assert [item["n"] async for item in consumer.iter_json()] == [0, 1, 2, 3]

        faults.inject_fault(stream_url, status=410, method="GET")
        async with Consumer(handle, name="c", checkpoints=store) as consumer:
            with pytest.raises(PositionRejectedError) as gone:
                async for _item in consumer.iter_json():
                    pass
            assert gone.value.reason.status == 410
            tail = await consumer.seek("now")
            assert tail == Position(str((await handle.head()).next_offset))
        await handle.append({"n": 4})
        assert await read_all(handle, store) == [4]


async def test_start_now_is_resolved_and_saved_when_opening(stream_url: str) -> None:
    store = MemoryCheckpoints()
    async with await filled(stream_url, 3) as handle:
        async with Consumer(handle, name="c", checkpoints=store, start="now") as consumer:
            assert consumer.committed == Position(str((await handle.head()).next_offset))
        await handle.append({"n": 3})  # arrives while the consumer is not running
        assert await read_all(handle, store) == [3]


async def test_one_iteration_at_a_time(stream_url: str) -> None:
    async with await filled(stream_url, 3) as handle:
        async with Consumer(handle, name="c", checkpoints=MemoryCheckpoints()) as consumer:
            items = consumer.iter_json()
            with pytest.raises(UsageError):
                consumer.iter_json()
            with pytest.raises(UsageError):
                await consumer.seek("-1")
            await items.aclose()
        with pytest.raises(UsageError):
            consumer.iter_json()


async def test_exactly_once_effects_with_sqlite(stream_url: str, tmp_path: Path) -> None:
    """The effect and the position in one transaction: a crash anywhere repeats nothing."""
    path = tmp_path / "app.db"
    store = SQLiteCheckpoints(path)
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("CREATE TABLE effects (n INTEGER)")

    def record(n: int, consumer: Consumer) -> None:
        with db:
            db.execute("INSERT INTO effects VALUES (?)", (n,))
            store.save_in(db, consumer.key, consumer.position)

    async def crash_at_6(handle: StreamHandle) -> None:
        async with Consumer(handle, name="c", checkpoints=store, commit_every=None) as c:
            async for item in c.iter_json():
                if item["n"] == 6:
                    raise RuntimeError("crash after the effects of 0-5")
                await anyio.to_thread.run_sync(record, item["n"], c)

    async with await filled(stream_url, 10) as handle:
        with pytest.raises(RuntimeError):
            await crash_at_6(handle)
        async with Consumer(handle, name="c", checkpoints=store, commit_every=None) as c:
            async for item in c.iter_json():
                await anyio.to_thread.run_sync(record, item["n"], c)
    effects = [n for (n,) in db.execute("SELECT n FROM effects ORDER BY rowid")]
    assert effects == list(range(10))
    db.close()
    store.close()
