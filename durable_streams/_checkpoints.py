"""Checkpoint stores: where a :class:`~durable_streams.Consumer` keeps its position.

A store maps a :class:`CheckpointKey` (consumer name + stream URL) to the
:class:`~durable_streams.Position` the consumer resumes from. The protocol is
two async methods, ``load`` and ``save``; three stores come built in:

- :class:`MemoryCheckpoints`: a dict (tests, or a process that never restarts);
- :class:`FileCheckpoints`: one small JSON file per key in a directory, replaced
  atomically (temp file, fsync, ``os.replace``, fsync of the directory);
- :class:`SQLiteCheckpoints`: a table in a SQLite database (stdlib ``sqlite3``
  in a worker thread), and ``save_in(connection, ...)`` to save inside your own
  transaction: your writes and the position commit together (exactly-once effects).

Keys never hold credentials: the stream URL loses its userinfo, query string
and fragment (where deployments put tokens).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread

from ._errors import (
    CheckpointCorruptError,
    CheckpointError,
    InvalidArgumentError,
    InvalidOffsetError,
)
from ._position import Position
from ._redact import excerpt

__all__ = [
    "CheckpointKey",
    "CheckpointStore",
    "FileCheckpoints",
    "MemoryCheckpoints",
    "SQLiteCheckpoints",
]

#: Longest consumer name accepted (it is stored, and appears in file names).
MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class CheckpointKey:
    """What a checkpoint is stored under: the consumer's name and the stream's URL.

    ``stream`` is the URL without credentials, query string or fragment, with
    the scheme and host in lower case: build keys with :meth:`for_stream`.

    Example::

        key = CheckpointKey.for_stream("billing", "https://user:pw@host/v1/stream/orders?token=x")
        assert key.stream == "https://host/v1/stream/orders"
    """

    consumer: str
    stream: str

    def __post_init__(self) -> None:
        if not isinstance(self.consumer, str) or not self.consumer.strip():
            raise InvalidArgumentError("a consumer name must be a non-empty string", field="name")
        if len(self.consumer) > MAX_NAME_LENGTH or not self.consumer.isprintable():
            raise InvalidArgumentError(
                f"a consumer name must be printable and at most {MAX_NAME_LENGTH} characters",
                field="name",
            )
        if not isinstance(self.stream, str) or not self.stream:
            raise InvalidArgumentError("a checkpoint key needs the stream URL", field="stream")

    @classmethod
    def for_stream(cls, consumer: str, url: str) -> CheckpointKey:
        """The key of consumer ``consumer`` reading the stream at ``url``.

        Example::

            key = CheckpointKey.for_stream("billing", handle.url)
        """
        return cls(consumer, stream_identity(url))

    def __str__(self) -> str:
        return f"{self.consumer} @ {self.stream}"


def stream_identity(url: str) -> str:
    """``url`` as stored in checkpoint keys: no userinfo, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise InvalidArgumentError(f"not a stream URL: {excerpt(url)}", field="url") from exc
    if not parts.scheme or not host:
        raise InvalidArgumentError(f"not an absolute stream URL: {excerpt(url)}", field="url")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path or "/", "", ""))


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a consumer's positions are kept: implement these two methods for your database.

    ``load`` returns the position saved under ``key``, or None when there is
    none. ``save`` stores ``position`` under ``key``, replacing the previous
    one, and returns once it is durable. Both raise :class:`CheckpointError`
    (or a subclass) when they fail. Store ``str(position)`` and read it back
    with ``Position.parse(text)``.

    Example (Redis, with redis.asyncio)::

        class RedisCheckpoints:
            def __init__(self, redis: Redis) -> None:
                self.redis = redis

            async def load(self, key: CheckpointKey) -> Position | None:
                text = await self.redis.hget("checkpoints", str(key))
                return Position.parse(text.decode()) if text is not None else None

            async def save(self, key: CheckpointKey, position: Position) -> None:
                await self.redis.hset("checkpoints", str(key), str(position))
    """

    async def load(self, key: CheckpointKey) -> Position | None: ...

    async def save(self, key: CheckpointKey, position: Position) -> None: ...


class MemoryCheckpoints:
    """Positions in a dict: for tests, or for one process that never restarts.

    Example::

        store = MemoryCheckpoints()
        async with Consumer(handle, name="t", checkpoints=store) as consumer: ...
        print(store.positions)
    """

    def __init__(self) -> None:
        self._positions: dict[CheckpointKey, Position] = {}
        self.saves = 0

    @property
    def positions(self) -> dict[CheckpointKey, Position]:
        """A copy of what is stored."""
        return dict(self._positions)

    async def load(self, key: CheckpointKey) -> Position | None:
        return self._positions.get(key)

    async def save(self, key: CheckpointKey, position: Position) -> None:
        self._positions[key] = position
        self.saves += 1


_FILE_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class FileCheckpoints:
    """One small JSON file per key in ``directory``, replaced atomically and durably.

    A save writes a temporary file next to the checkpoint, fsyncs it, renames
    it over the checkpoint (``os.replace``, atomic) and fsyncs the directory,
    so after a crash (or power loss) the file holds the old position or the
    new one, never a mix. A file that is damaged anyway (edited by hand, a disk
    fault) raises :class:`CheckpointCorruptError` naming it: delete the file to
    start over from the consumer's ``start``, or write a known position with
    ``consumer.seek()``. Leftover temporary files of interrupted saves are
    ignored (and removed by the next ``load``). Blocking file I/O runs in a
    worker thread. Several processes may share the directory as long as each
    consumer name is used by one process at a time.

    Example::

        store = FileCheckpoints("/var/lib/billing/checkpoints")
        async with Consumer(handle, name="billing", checkpoints=store) as consumer: ...
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, key: CheckpointKey) -> Path:
        """The file that holds ``key``'s checkpoint (readable name + hash of the key)."""
        digest = hashlib.sha256(f"{key.consumer}\n{key.stream}".encode()).hexdigest()[:20]
        readable = _UNSAFE.sub("_", key.consumer)[:60]
        return self.directory / f"{readable}-{digest}.json"

    async def load(self, key: CheckpointKey) -> Position | None:
        return await anyio.to_thread.run_sync(self._load, key)

    async def save(self, key: CheckpointKey, position: Position) -> None:
        await anyio.to_thread.run_sync(self._save, key, position)

    def _load(self, key: CheckpointKey) -> Position | None:
        path = self.path_for(key)
        self._remove_leftovers(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint file {path}: {exc}") from exc
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or record.get("version") != _FILE_VERSION:
                raise ValueError("not a checkpoint record of version 1")
            if record.get("consumer") != key.consumer or record.get("stream") != key.stream:
                raise ValueError("it belongs to another consumer or stream")
            text = record.get("position")
            if not isinstance(text, str):
                raise ValueError("it has no position")
            return Position.parse(text)
        except (ValueError, InvalidOffsetError) as exc:  # JSON errors are ValueErrors
            raise CheckpointCorruptError(
                f"checkpoint file {path} of {key} is damaged ({excerpt(str(exc), 120)}): delete it "
                "to start over from the consumer's start, or save a known position with "
                "consumer.seek()",
                location=str(path),
            ) from exc

    def _save(self, key: CheckpointKey, position: Position) -> None:
        path = self.path_for(key)
        record = {
            "version": _FILE_VERSION,
            "consumer": key.consumer,
            "stream": key.stream,
            "position": str(position),
            "saved_at": time.time(),
        }
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            _fsync_directory(self.directory)
        except OSError as exc:
            _unlink_quietly(temp)
            raise CheckpointError(f"cannot save checkpoint file {path}: {exc}") from exc
        except BaseException:
            _unlink_quietly(temp)
            raise

    def _remove_leftovers(self, path: Path) -> None:
        """Temporary files of saves that a crash interrupted (they never became the file)."""
        try:
            leftovers = list(path.parent.glob(f".{path.name}.*.tmp"))
        except OSError:
            return
        for leftover in leftovers:
            _unlink_quietly(leftover)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SQLiteCheckpoints:
    """Positions in a SQLite table (stdlib ``sqlite3``, run in a worker thread).

    The table (``durable_streams_checkpoints`` unless ``table=`` says otherwise)
    has one row per key: ``consumer``, ``stream``, ``position`` (the ``str()``
    of a :class:`Position`) and ``updated_at``. It is created when first needed.
    ``load``/``save`` use the store's own connection (one at a time, each save
    its own transaction). For exactly-once effects, keep your data in the same
    database and call :meth:`save_in` inside your own transaction: your writes
    and the consumer's position then commit (or roll back) together.

    The store puts the database in WAL mode. ``synchronous="normal"`` (default)
    makes a save durable against a crash of the process (kill -9) without an
    fsync per save; a power loss may roll back the latest saves (the consumer
    then sees more items again, never fewer). ``synchronous="full"`` fsyncs every
    save (a few milliseconds each on common disks).

    Example::

        store = SQLiteCheckpoints("state.db")
        async with Consumer(handle, name="billing", checkpoints=store) as consumer:
            async for order in consumer.iter_json():
                ...
        store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "durable_streams_checkpoints",
        synchronous: Literal["normal", "full"] = "normal",
        timeout: float = 30.0,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise InvalidArgumentError(
                "synchronous must be 'normal' or 'full'", field="synchronous"
            )
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise InvalidArgumentError(
                "table must be a plain SQL identifier (letters, digits, _)", field="table"
            )
        self.path = os.fspath(path)
        self.table = table
        self.synchronous = synchronous
        self._timeout = timeout
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    # -- the store's own connection -------------------------------------------------------------

    async def load(self, key: CheckpointKey) -> Position | None:
        return await anyio.to_thread.run_sync(self._locked_load, key)

    async def save(self, key: CheckpointKey, position: Position) -> None:
        await anyio.to_thread.run_sync(self._locked_save, key, position)

    def close(self) -> None:
        """Close the store's connection (a later load/save opens a new one)."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def __enter__(self) -> SQLiteCheckpoints:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # Autocommit mode: each save below is one explicit transaction.
            connection = sqlite3.connect(
                self.path, timeout=self._timeout, check_same_thread=False, isolation_level=None
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
                self._create_table(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _locked_load(self, key: CheckpointKey) -> Position | None:
        with self._lock:
            try:
                return self.load_in(self._connect(), key)
            except sqlite3.Error as exc:
                raise CheckpointError(f"cannot load checkpoint of {key}: {exc}") from exc

    def _locked_save(self, key: CheckpointKey, position: Position) -> None:
        with self._lock:
            try:
                connection = self._connect()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    self._upsert(connection, key, position)
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CheckpointError(f"cannot save checkpoint of {key}: {exc}") from exc

    # -- inside the caller's transaction ----------------------------------------------------------

    def save_in(
        self, connection: sqlite3.Connection, key: CheckpointKey, position: Position
    ) -> None:
        """Save ``position`` through ``connection``, inside the transaction it has open.

        Nothing is committed here: the position becomes durable when your
        transaction commits, together with your own writes, or not at all.
        Synchronous, like ``sqlite3`` itself: call it where you run your
        transaction (a worker thread, for an async program).

        Example::

            def record(order: Order, position: Position) -> None:
                with db:  # one transaction: the effect and the position
                    db.execute("INSERT INTO bills VALUES (?, ?)", (order.id, order.total))
                    store.save_in(db, consumer.key, position)

            async for order in consumer.iter_json(model=Order):
                await anyio.to_thread.run_sync(record, order, consumer.position)
        """
        self._create_table(connection)
        self._upsert(connection, key, position)

    def _upsert(
        self, connection: sqlite3.Connection, key: CheckpointKey, position: Position
    ) -> None:
        connection.execute(
            f"INSERT INTO {self.table} (consumer, stream, position, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (consumer, stream) DO UPDATE SET "
            "position = excluded.position, updated_at = excluded.updated_at",
            (key.consumer, key.stream, str(position), time.time()),
        )

    def load_in(self, connection: sqlite3.Connection, key: CheckpointKey) -> Position | None:
        """The position saved under ``key``, read through ``connection`` (None if none).

        Example::

            position = store.load_in(db, consumer.key)
        """
        self._create_table(connection)
        row = connection.execute(
            f"SELECT position FROM {self.table} WHERE consumer = ? AND stream = ?",
            (key.consumer, key.stream),
        ).fetchone()
        if row is None:
            return None
        text = row[0]
        try:
            if not isinstance(text, str):
                raise ValueError(f"a position must be text, not {type(text).__name__}")
            return Position.parse(text)
        except (ValueError, InvalidOffsetError) as exc:
            raise CheckpointCorruptError(
                f"the checkpoint row of {key} in table {self.table} of {self.path} is damaged "
                f"({excerpt(str(exc), 120)}): delete the row to start over from the consumer's "
                "start, or save a known position with consumer.seek()",
                location=f"{self.path}:{self.table}",
            ) from exc

    def _create_table(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "consumer TEXT NOT NULL, stream TEXT NOT NULL, position TEXT NOT NULL, "
            "updated_at REAL NOT NULL, PRIMARY KEY (consumer, stream))"
        )
