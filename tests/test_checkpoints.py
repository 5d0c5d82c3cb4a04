"""Unit tests of the checkpoint stores: keys without credentials, round trips, crash
safety of the file store (interrupted saves, torn and damaged files), SQLite inside
the caller's own transaction."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from durable_streams import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointKey,
    CheckpointStore,
    FileCheckpoints,
    InvalidArgumentError,
    MemoryCheckpoints,
    Position,
    SQLiteCheckpoints,
)

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:4437/v1/stream/orders"
KEY = CheckpointKey.for_stream("billing", URL)
P1 = Position("0000000000000000_0000000000000100", 7)
P2 = Position("0000000000000000_0000000000000200")


def test_keys_never_hold_credentials() -> None:
    key = CheckpointKey.for_stream(
        "billing", "HTTPS://alice:s3cret@Example.COM:8443/v1/stream/Orders?token=abc#frag"
    )
    assert key.stream == "https://example.com:8443/v1/stream/Orders"
    assert "s3cret" not in str(key)
    assert "abc" not in str(key)
    assert CheckpointKey.for_stream("billing", "http://[::1]:80/s").stream == "http://[::1]:80/s"


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 201])
def test_bad_consumer_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        CheckpointKey.for_stream(name, URL)


def test_relative_urls_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        CheckpointKey.for_stream("billing", "/v1/stream/orders")


def test_the_built_in_stores_follow_the_protocol(tmp_path: Path) -> None:
    for store in (
        MemoryCheckpoints(),
        FileCheckpoints(tmp_path),
        SQLiteCheckpoints(tmp_path / "s.db"),
    ):
        assert isinstance(store, CheckpointStore)


async def round_trip(store: CheckpointStore) -> None:
    other = CheckpointKey.for_stream("shipping", URL)
    assert await store.load(KEY) is None
    await store.save(KEY, P1)
    await store.save(other, P2)
    assert await store.load(KEY) == P1
    await store.save(KEY, P2)
    assert await store.load(KEY) == P2
    assert await store.load(other) == P2


async def test_memory_store_round_trip() -> None:
    store = MemoryCheckpoints()
    await round_trip(store)
    assert store.positions[KEY] == P2
    assert store.saves == 3


async def test_file_store_round_trip_and_persistence(tmp_path: Path) -> None:
    await round_trip(FileCheckpoints(tmp_path / "cp"))
    assert await FileCheckpoints(tmp_path / "cp").load(KEY) == P2  # a new process reads it back
    assert [p.name for p in (tmp_path / "cp").iterdir() if p.name.startswith(".")] == []


async def test_an_interrupted_file_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileCheckpoints(tmp_path)
    await store.save(KEY, P1)

    def crash(src: object, dst: object) -> None:
        raise OSError(5, "simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CheckpointError):
        await store.save(KEY, P2)
    monkeypatch.undo()
    assert await store.load(KEY) == P1
    assert sorted(os.listdir(tmp_path)) == [store.path_for(KEY).name]


async def test_a_torn_temporary_file_of_a_killed_save_is_ignored(tmp_path: Path) -> None:
    store = FileCheckpoints(tmp_path)
    await store.save(KEY, P1)
    path = store.path_for(KEY)
    # What kill -9 in the middle of a save leaves: part of the new record, never renamed.
    torn = path.with_name(f".{path.name}.0123456789ab.tmp")
    torn.write_bytes(path.read_bytes()[:17])
    assert await store.load(KEY) == P1
    assert not torn.exists()  # cleaned up by load


@pytest.mark.parametrize(
    "content",
    [
        b'{"version":1,"consumer":"billing","stream":"http://127.0.0.1:4437/v1/str',  # torn
        b"",
        b"not json",
        b'{"version":1,"consumer":"billing","stream":"http://127.0.0.1:4437/v1/stream/orders",'
        b'"position":"0000_0001"}',  # a plain offset is not a stored position
        b'{"version":1,"consumer":"shipping","stream":"http://127.0.0.1:4437/v1/stream/orders",'
        b'"position":"dsp1:items:0:0000_0001"}',  # another key's file
        b'{"version":2}',
    ],
)
async def test_a_damaged_checkpoint_file_is_a_typed_error(tmp_path: Path, content: bytes) -> None:
    store = FileCheckpoints(tmp_path)
    path = store.path_for(KEY)
    path.write_bytes(content)
    with pytest.raises(CheckpointCorruptError) as caught:
        await store.load(KEY)
    assert caught.value.location == str(path)
    assert "delete it" in str(caught.value)
    await store.save(KEY, P1)  # the documented remedy: a fresh save replaces it
    assert await store.load(KEY) == P1


async def test_sqlite_store_round_trip_and_persistence(tmp_path: Path) -> None:
    store = SQLiteCheckpoints(tmp_path / "s.db")
    await round_trip(store)
    store.close()
    with SQLiteCheckpoints(tmp_path / "s.db") as again:
        assert await again.load(KEY) == P2


async def test_sqlite_save_in_commits_with_the_callers_transaction(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    store = SQLiteCheckpoints(path, synchronous="full")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE effects (n INTEGER)")

    def failing_transaction() -> None:
        with db:  # rolled back: neither the effect nor the position
            db.execute("INSERT INTO effects VALUES (1)")
            store.save_in(db, KEY, P1)
            raise RuntimeError("the effect failed")

    with pytest.raises(RuntimeError):
        failing_transaction()
    assert await store.load(KEY) is None
    with db:  # committed: both
        db.execute("INSERT INTO effects VALUES (1)")
        store.save_in(db, KEY, P1)
    assert await store.load(KEY) == P1
    assert store.load_in(db, KEY) == P1
    assert db.execute("SELECT count(*) FROM effects").fetchone() == (1,)
    db.close()
    store.close()


async def test_a_damaged_sqlite_row_is_a_typed_error(tmp_path: Path) -> None:
    store = SQLiteCheckpoints(tmp_path / "s.db", table="cp")
    await store.save(KEY, P1)
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE cp SET position = 'garbage'")
    with pytest.raises(CheckpointCorruptError):
        await store.load(KEY)
    store.close()


def test_sqlite_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        SQLiteCheckpoints(tmp_path / "s.db", table="cp; DROP TABLE x")
    with pytest.raises(InvalidArgumentError):
        SQLiteCheckpoints(tmp_path / "s.db", synchronous="off")  # type: ignore[arg-type]


async def test_sqlite_errors_are_typed(tmp_path: Path) -> None:
    store = SQLiteCheckpoints(tmp_path / "missing-dir" / "s.db")
    with pytest.raises(CheckpointError):
        await store.load(KEY)
