"""A consumer process for the crash tests (``test_consumer_crash.py``): run, SIGKILLed, rerun.

    python -m tests.integration.consumer_worker URL MODE STATE_DIR BACKEND

``at-least-once``: each item's effect is a line appended to ``effects.log``
(written before the next item is requested, so it survives kill -9), and the
position is saved in a :class:`FileCheckpoints` every ``WINDOW`` items.
``exactly-once``: each list of items is inserted into ``effects`` in the same
SQLite transaction as the consumer's position (``save_in``); ``sync-exactly-once``
does the same with ``durable_streams.sync`` (BACKEND is ignored). Prints
``progress N`` every ``PROGRESS_EVERY`` items handled and ``done`` at the end.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import anyio
import anyio.to_thread

from durable_streams import (
    CommitEvery,
    Consumer,
    FileCheckpoints,
    Position,
    SQLiteCheckpoints,
    StreamHandle,
)

#: At-least-once commit window: at most this many items are seen again after a kill.
WINDOW = 200
PROGRESS_EVERY = 100
BATCH = 50


def progress(handled: int, before: int) -> None:
    if handled // PROGRESS_EVERY != before // PROGRESS_EVERY:
        print(f"progress {handled}", flush=True)


async def at_least_once(handle: StreamHandle, state: Path) -> None:
    fd = os.open(state / "effects.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"start\n")
    store = FileCheckpoints(state / "checkpoints")
    policy = CommitEvery(items=WINDOW, seconds=None)
    handled = 0
    async with Consumer(handle, name="worker", checkpoints=store, commit_every=policy) as c:
        async for item in c.iter_json():
            os.write(fd, b"%d\n" % item["n"])  # the effect
            handled += 1
            progress(handled, handled - 1)
    os.close(fd)


async def exactly_once(handle: StreamHandle, state: Path) -> None:
    store = SQLiteCheckpoints(state / "app.db")
    db = sqlite3.connect(state / "app.db", check_same_thread=False)
    db.execute("CREATE TABLE IF NOT EXISTS effects (n INTEGER NOT NULL)")
    handled = 0
    async with Consumer(handle, name="worker", checkpoints=store, commit_every=None) as c:
        async for batch in c.iter_batches(BATCH):
            position = c.position  # just after this list

            def commit(items: list[dict[str, int]] = batch, after: Position = position) -> None:
                with db:  # the effects and the position: one transaction
                    db.executemany("INSERT INTO effects VALUES (?)", [(i["n"],) for i in items])
                    store.save_in(db, c.key, after)

            await anyio.to_thread.run_sync(commit)
            handled += len(batch)
            progress(handled, handled - len(batch))
    db.close()
    store.close()


def sync_exactly_once(url: str, state: Path) -> None:
    """``exactly-once`` through ``durable_streams.sync`` (no event loop in this thread)."""
    from durable_streams import sync

    store = SQLiteCheckpoints(state / "app.db")
    db = sqlite3.connect(state / "app.db")
    db.execute("CREATE TABLE IF NOT EXISTS effects (n INTEGER NOT NULL)")
    handled = 0
    with (
        sync.StreamHandle(url) as handle,
        sync.Consumer(handle, name="worker", checkpoints=store, commit_every=None) as c,
    ):
        for batch in c.iter_batches(BATCH):
            with db:  # the effects and the position: one transaction, on this thread
                db.executemany("INSERT INTO effects VALUES (?)", [(i["n"],) for i in batch])
                store.save_in(db, c.key, c.position)
            handled += len(batch)
            progress(handled, handled - len(batch))
    db.close()
    store.close()
    print("done", flush=True)


async def main(url: str, mode: str, state: Path) -> None:
    async with StreamHandle(url) as handle:
        if mode == "at-least-once":
            await at_least_once(handle, state)
        else:
            await exactly_once(handle, state)
    print("done", flush=True)


if __name__ == "__main__":
    url, mode, state, backend = sys.argv[1:5]
    if mode == "sync-exactly-once":
        sync_exactly_once(url, Path(state))
    else:
        anyio.run(main, url, mode, Path(state), backend=backend)
