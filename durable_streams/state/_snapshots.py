"""Snapshots of a materialized state with the stream position they reflect, and stores.

A :class:`Snapshot` is what a reader needs to continue without replaying the
stream: the state as data, the exact :class:`~durable_streams.Position` after
the last message applied, and the transaction ids seen recently. A store
keeps one snapshot per name: :class:`FileSnapshots` (one JSON file per name,
replaced atomically) and :class:`SQLiteSnapshots` (one row per name), both
run their blocking I/O in a worker thread. Anything with ``load``/``save``
coroutines is a :class:`SnapshotStore`: a store keyed by name holding a
position plus a payload, so a checkpoint store could keep snapshots too.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
import pydantic_core

from durable_streams import InvalidArgumentError, InvalidOffsetError, ParseError, Position

from ._messages import StateError

__all__ = [
    "FileSnapshots",
    "SQLiteSnapshots",
    "Snapshot",
    "SnapshotError",
    "SnapshotStore",
]

_FORMAT = "durable-streams-state-snapshot/1"


class SnapshotError(ParseError, StateError):
    """A stored snapshot could not be read back (corrupt, or another format)."""

    code = "PARSE_ERROR"


@dataclass(frozen=True)
class Snapshot:
    """A state as data (``{type: {key: value}}``) and the position right after it.

    ``txids`` are the transaction ids seen most recently (oldest first), so a
    writer waiting for one still finds it after the reader restarted.

    Example::

        snapshot = Snapshot(Position("0000000000000000_0000000000000042", 3), {"user": {}})
        assert Snapshot.from_json(snapshot.to_json()) == snapshot
    """

    position: Position
    data: Mapping[str, Mapping[str, Any]]
    txids: tuple[str, ...] = field(default=())

    def to_json(self) -> bytes:
        """The snapshot as JSON bytes (what the stores write).

        Example::

            Path("room.json").write_bytes(snapshot.to_json())
        """
        return pydantic_core.to_json(
            {
                "format": _FORMAT,
                "position": str(self.position),
                "txids": list(self.txids),
                "state": self.data,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Snapshot:
        """Read a snapshot back from :meth:`to_json`'s output.

        Raises :class:`SnapshotError` if it is not one.

        Example::

            snapshot = Snapshot.from_json(Path("room.json").read_bytes())
        """
        try:
            found = pydantic_core.from_json(data)
        except ValueError as exc:
            raise SnapshotError(f"a stored snapshot is not JSON: {exc}") from None
        if not isinstance(found, dict) or found.get("format") != _FORMAT:
            raise SnapshotError(
                f"not a state snapshot of format {_FORMAT}: {excerpt(repr(found), 120)}"
            )
        state, txids = found.get("state"), found.get("txids")
        if not isinstance(state, dict) or not all(isinstance(v, dict) for v in state.values()):
            raise SnapshotError("a stored snapshot's state is not {type: {key: value}}")
        if not isinstance(txids, list) or not all(isinstance(t, str) for t in txids):
            raise SnapshotError("a stored snapshot's txids are not a list of strings")
        try:
            position = Position.parse(str(found.get("position")))
        except InvalidOffsetError as exc:
            raise SnapshotError(f"a stored snapshot's position is invalid: {exc}") from exc
        return cls(position, state, tuple(txids))


class SnapshotStore(Protocol):
    """Where snapshots are kept, one per name (e.g. one per stream and reader)."""

    async def load(self, name: str) -> Snapshot | None:
        """The snapshot saved under ``name``, or None."""
        ...

    async def save(self, name: str, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` under ``name``, replacing the previous one atomically."""
        ...


class FileSnapshots:
    """Snapshots as JSON files in ``directory``, one per name, replaced atomically.

    A save writes a temporary file, flushes it to disk and renames it over
    the old one, so a crash leaves the old snapshot or the new one, never a
    mix.

    Example::

        store = FileSnapshots("/var/lib/myapp/state")
        async with ChatRoom(handle, snapshots=store, snapshot_name="room-42") as room:
            ...
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, name: str) -> Path:
        """The file holding the snapshot of ``name``.

        Example::

            print(store.path_for("room-42"))
        """
        _check_name(name)
        return self.directory / (urllib.parse.quote(name, safe="") + ".snapshot.json")

    async def load(self, name: str) -> Snapshot | None:
        """The snapshot saved under ``name``, or None.

        Example::

            snapshot = await store.load("room-42")
        """
        path = self.path_for(name)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

        data = await anyio.to_thread.run_sync(read)
        return None if data is None else Snapshot.from_json(data)

    async def save(self, name: str, snapshot: Snapshot) -> None:
        """Write ``snapshot`` under ``name`` (atomically).

        Example::

            await store.save("room-42", snapshot)
        """
        path = self.path_for(name)
        data = snapshot.to_json()

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

        await anyio.to_thread.run_sync(write)


class SQLiteSnapshots:
    """Snapshots in an SQLite database, one row per name in ``table``.

    Each call opens its own connection in a worker thread; a save is one
    transaction, so a crash leaves the old snapshot or the new one.

    Example::

        store = SQLiteSnapshots("state.db")
        async with ChatRoom(handle, snapshots=store, snapshot_name="room-42") as room:
            ...
    """

    def __init__(
        self, path: str | os.PathLike[str], *, table: str = "durable_streams_snapshots"
    ) -> None:
        if not table.isidentifier():
            raise InvalidArgumentError("table must be a plain identifier", field="table")
        self.path = Path(path)
        self.table = table

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            "(name TEXT PRIMARY KEY, position TEXT NOT NULL, snapshot BLOB NOT NULL)"
        )
        return connection

    async def load(self, name: str) -> Snapshot | None:
        """The snapshot saved under ``name``, or None.

        Example::

            snapshot = await store.load("room-42")
        """
        _check_name(name)

        def read() -> bytes | None:
            connection = self._connect()
            try:
                row = connection.execute(
                    f"SELECT snapshot FROM {self.table} WHERE name = ?", (name,)
                ).fetchone()
            finally:
                connection.close()
            return None if row is None else bytes(row[0])

        data = await anyio.to_thread.run_sync(read)
        return None if data is None else Snapshot.from_json(data)

    async def save(self, name: str, snapshot: Snapshot) -> None:
        """Write ``snapshot`` under ``name`` in one transaction.

        Example::

            await store.save("room-42", snapshot)
        """
        _check_name(name)
        data = snapshot.to_json()

        def write() -> None:
            connection = self._connect()
            try:
                with connection:
                    connection.execute(
                        f"INSERT INTO {self.table} (name, position, snapshot) VALUES (?, ?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET position = excluded.position, "
                        "snapshot = excluded.snapshot",
                        (name, str(snapshot.position), data),
                    )
            finally:
                connection.close()

        await anyio.to_thread.run_sync(write)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("a snapshot name must be a non-empty string", field="name")


def excerpt(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters (for error messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
