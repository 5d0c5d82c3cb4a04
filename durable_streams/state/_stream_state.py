"""``StreamState``: a live, typed, resumable view of a state stream.

Subclass it with :class:`~durable_streams.state.Collection` attributes; an
instance reads the stream through the SDK's own reads
(``handle.stream(...).iter_json()``, resuming from ``res.position``),
applies every message to a :class:`MaterializedState` and exposes each
collection as a typed :class:`CollectionView`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from durable_streams import (
    OFFSET_START,
    InvalidArgumentError,
    LiveMode,
    Position,
    StreamHandle,
    UsageError,
)

from ._collection import Collection
from ._materialized import MaterializedState
from ._messages import InvalidStateMessageError, StateError, StateMessage, parse_message
from ._snapshots import Snapshot, SnapshotStore

__all__ = ["StateBatch", "StateClosedError", "StreamState", "TxidTimeoutError"]

logger = logging.getLogger("durable_streams.state")

_S = TypeVar("_S", bound="StreamState")


class TxidTimeoutError(StateError, TimeoutError):
    """``wait_for_txid`` gave up: the transaction was not seen within its timeout."""

    code = "TIMEOUT"


class StateClosedError(StateError):
    """The view stopped following its stream (closed, EOF, or its read failed) before
    what was awaited happened. A failed read is kept as ``__cause__``."""

    code = "STATE_CLOSED"


@dataclass(frozen=True, slots=True)
class StateBatch:
    """What one server response brought: passed to ``on_batch`` once it is applied.

    ``messages`` is how many items it held, ``position`` where the view now is,
    ``up_to_date`` whether that is the stream's tail, ``txids`` the new
    transaction ids it made visible.
    """

    messages: int
    position: Position
    up_to_date: bool
    txids: tuple[str, ...]


OnEvent = Callable[[StateMessage], "Awaitable[object] | object"]
OnBatch = Callable[[StateBatch], "Awaitable[object] | object"]
OnInvalid = Callable[[InvalidStateMessageError], object]


class StreamState:
    """A live view of a state stream, with one typed collection per class attribute.

    Entering ``async with`` restores the last snapshot (if ``snapshots`` has
    one), catches up with the stream, and returns once caught up; the view then
    follows new messages in the background (``live``: any live mode of
    ``handle.stream``) until the block ends, when a snapshot is saved.
    ``await view.preload()`` catches up without following; ``await
    view.follow()`` follows in the current task.

    Collections read as typed views (``room.users.get(key)``, ``len``,
    iteration). ``position`` is the exact place after the last message
    applied; a :class:`Snapshot` saved to ``snapshots`` under
    ``snapshot_name`` (default: the stream URL) lets a restarted reader
    continue from there instead of replaying the stream (saved when the view
    closes, by :meth:`save_snapshot`, and at most every ``autosave`` seconds
    while following). Hooks: ``on_event(message)`` for each message applied,
    ``on_batch(batch)`` after each response, ``on_invalid(error)`` for each
    message skipped as invalid (logged when not given); sync or async.

    Example::

        class ChatRoom(StreamState):
            users = Collection(User, type="user", primary_key="id")
            messages = Collection(Message, type="message", primary_key="id")

        async with ChatRoom(handle, snapshots=FileSnapshots("state")) as room:
            print(room.users.get("u1"), len(room.messages))
            await room.wait_for_txid(txid, timeout=5)
    """

    _collections: ClassVar[Mapping[str, Collection[Any]]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Collection[Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, attribute in vars(klass).items():
                if isinstance(attribute, Collection):
                    found[name] = attribute
        reserved = {name for name in dir(StreamState) if not name.startswith("_")}
        by_type: dict[str, str] = {}
        for name, collection in found.items():
            if name in reserved:
                raise InvalidArgumentError(
                    f"a collection cannot be named {name!r}: StreamState uses that name",
                    field=name,
                )
            if collection.type in by_type:
                raise InvalidArgumentError(
                    f"collections {by_type[collection.type]!r} and {name!r} share the type "
                    f"{collection.type!r}",
                    field=name,
                )
            by_type[collection.type] = name
        cls._collections = MappingProxyType(found)

    @classmethod
    def schema(cls) -> Mapping[str, Collection[Any]]:
        """The declared collections by attribute name.

        Example::

            state = MaterializedState(ChatRoom.schema().values())
        """
        return cls._collections

    def __init__(
        self,
        handle: StreamHandle,
        *,
        live: LiveMode = "auto",
        snapshots: SnapshotStore | None = None,
        snapshot_name: str | None = None,
        autosave: float | None = 10.0,
        on_event: OnEvent | None = None,
        on_batch: OnBatch | None = None,
        on_invalid: OnInvalid | None = None,
        max_txids: int = 10_000,
    ) -> None:
        if live is False:
            raise InvalidArgumentError(
                "a StreamState follows its stream: pass a live mode (or use preload())",
                field="live",
            )
        if max_txids < 1:
            raise InvalidArgumentError("max_txids must be at least 1", field="max_txids")
        if autosave is not None and not (autosave >= 0 and math.isfinite(autosave)):
            raise InvalidArgumentError("autosave must be seconds >= 0 or None", field="autosave")
        self._handle = handle
        self._live: LiveMode = live
        self._snapshots = snapshots
        self._snapshot_name = snapshot_name or handle.url
        self._autosave = autosave
        self._on_event = on_event
        self._on_batch = on_batch
        self._on_invalid = on_invalid
        self._max_txids = max_txids
        self._state = MaterializedState(self._collections.values(), on_invalid=self._invalid)
        # Where the view is: ``_start`` (where the current response began) plus the
        # ``_index`` items of it applied since.
        self._start: Position | None = None
        self._index = 0
        self._txids: OrderedDict[str, None] = OrderedDict()
        self._txid_waiters: dict[str, list[anyio.Event]] = {}
        self._restored = False
        self._restored_from: Position | None = None
        self._applied = 0
        self._caught_up = anyio.Event()
        self._stopped = False  # the follower ended: waiters fail at once
        self._error: BaseException | None = None
        self._closed = False
        self._following = False
        self._ended = anyio.Event()  # set when a follower stops (EOF, error or cancelled)
        self._task_group: TaskGroup | None = None
        self._reading = anyio.Lock()
        self._last_save = time.monotonic()
        self._saved_position: Position | None = None

    # -- what the view holds ------------------------------------------------------------------

    @property
    def state(self) -> MaterializedState:
        """The materialized state behind the collections (all types, typed or not)."""
        return self._state

    @property
    def handle(self) -> StreamHandle:
        """The stream handle the view reads with."""
        return self._handle

    @property
    def position(self) -> Position:
        """Where the view is: the exact position after the last message applied.

        Example::

            print(str(room.position))
        """
        start = self._start or Position(OFFSET_START)
        return Position(start.offset, start.skip + self._index) if self._index else start

    @property
    def offset(self) -> str:
        """The offset of :attr:`position` (where the current response began)."""
        return self.position.offset

    @property
    def caught_up(self) -> bool:
        """Whether the view reached the stream's tail at least once."""
        return self._caught_up.is_set()

    @property
    def closed(self) -> bool:
        """Whether the stream is closed and the view read all of it (EOF)."""
        return self._closed

    @property
    def restored_from(self) -> Position | None:
        """The position of the snapshot the view was restored from, if any."""
        return self._restored_from

    @property
    def applied(self) -> int:
        """How many stream messages this view read (valid or not; a snapshot's not counted)."""
        return self._applied

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the background follower, if one did."""
        return self._error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._handle.url!r}, {self._state!r}, at {self.position})"

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self: _S) -> _S:
        if self._task_group is not None:
            raise UsageError("this StreamState is already entered")
        await self.preload()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            await task_group.start(self._follow_in_background)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        if exc is None and self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        """Stop following and save a snapshot (if there is a store).

        Example::

            await room.aclose()
        """
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        self._stop()
        if self._snapshots is not None and self._restored:
            with anyio.CancelScope(shield=True):
                await self.save_snapshot()

    async def _follow_in_background(self, *, task_status: TaskStatus[None]) -> None:
        # An error is kept in self._error: waiters fail with it, and the block raises it.
        with contextlib.suppress(Exception):
            await self._follow(task_status.started)

    # -- reading ------------------------------------------------------------------------------

    async def preload(self) -> None:
        """Restore the snapshot (the first time) and catch up with the stream's tail.

        Returns once the view holds everything the stream had when it was
        called. While a follower runs (``async with``), it waits until that
        follower caught up instead.

        Example::

            room = ChatRoom(handle)
            await room.preload()
            print(len(room.users))
        """
        if self._following:
            await self._caught_up.wait()
            return
        await self._catch_up()

    async def _catch_up(self) -> None:
        async with self._reading:
            await self._restore()
            if not self._closed:
                await self._read(live=False)
        self._caught_up.set()

    async def follow(self) -> None:
        """Catch up, then apply new messages as they arrive until the stream closes.

        Runs in the current task until EOF or until cancelled; ``async with``
        runs it in the background.

        Example::

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(room.follow)
                await room.preload()   # returns once the follower caught up
        """
        await self._follow(lambda: None)

    async def _follow(self, started: Callable[[], object]) -> None:
        if self._following:
            raise UsageError("this StreamState is already following its stream")
        self._following = True
        self._stopped = False
        started()
        try:
            if not self._caught_up.is_set():
                await self._catch_up()
            async with self._reading:
                if not self._closed:
                    await self._read(live=self._live)
        except Exception as error:
            self._error = error
            raise
        finally:
            self._following = False
            self._stop()
            self._ended.set()

    async def wait_closed(self) -> None:
        """Wait until the follower stops: the stream closed and was read to its end (EOF).

        Raises the follower's error if its read failed.

        Example::

            async with ChatRoom(handle) as room:
                await room.wait_closed()   # returns once the room's stream is closed
        """
        if not self._following and not self._ended.is_set():
            raise UsageError("wait_closed() needs a following view (async with, or follow())")
        await self._ended.wait()
        if self._error is not None:
            raise self._error

    async def _restore(self) -> None:
        if self._restored:
            return
        self._restored = True
        if self._snapshots is None:
            return
        snapshot = await self._snapshots.load(self._snapshot_name)
        if snapshot is None:
            return
        self._state.load_data(snapshot.data)
        self._start, self._index = snapshot.position, 0
        self._restored_from = self._saved_position = snapshot.position
        for txid in snapshot.txids[-self._max_txids :]:
            self._txids[txid] = None

    async def _read(self, *, live: LiveMode) -> None:
        """Apply what the stream holds after :attr:`position` (until caught up, or EOF)."""
        apply = self._state.apply
        on_event = self._on_event
        new_txids: list[str] = []
        count = 0
        request = self._handle.stream(offset=self._start or OFFSET_START, live=live)
        async with request as res:
            boundary = res.offset
            async for item in res.iter_json():
                valid = apply(item)
                count += 1
                self._applied += 1
                ended = res.offset != boundary  # that item ended a response
                if ended:
                    boundary = res.offset
                    self._start, self._index = res.position, 0
                else:
                    self._index += 1
                if valid:
                    headers = item.get("headers") if type(item) is dict else None
                    txid = headers.get("txid") if type(headers) is dict else None
                    if type(txid) is str:
                        new_txids.append(txid)
                    if on_event is not None:  # the view already includes the message
                        await _call(on_event, parse_message(item))
                if ended:
                    await self._end_of_response(count, res.up_to_date, new_txids)
                    new_txids, count = [], 0
            self._start, self._index = res.position, 0  # e.g. an empty response at the tail
            self._closed = res.closed
            if count or new_txids:
                await self._end_of_response(count, res.up_to_date, new_txids)

    async def _end_of_response(self, count: int, up_to_date: bool, txids: list[str]) -> None:
        # A response's transactions become visible together, once all of it is applied.
        seen = self._txids
        for txid in txids:
            seen[txid] = None
            seen.move_to_end(txid)
            if len(seen) > self._max_txids:
                seen.popitem(last=False)
            for event in self._txid_waiters.pop(txid, ()):
                event.set()
        if up_to_date and not self._caught_up.is_set():
            self._caught_up.set()
        if self._on_batch is not None:
            await _call(self._on_batch, StateBatch(count, self.position, up_to_date, tuple(txids)))
        if (
            self._autosave is not None
            and self._snapshots is not None
            and time.monotonic() - self._last_save >= self._autosave
        ):
            await self.save_snapshot()

    def _invalid(self, error: InvalidStateMessageError) -> None:
        if error.position is None:
            error.position = self.position  # where the invalid message was read
            error.offset = error.position.offset
        if self._on_invalid is not None:
            self._on_invalid(error)
        else:
            logger.warning("skipped %s", error)

    def _stop(self) -> None:
        """No follower runs any more: waiting for a txid can only fail."""
        self._stopped = True
        for events in self._txid_waiters.values():
            for event in events:
                event.set()
        self._txid_waiters.clear()

    # -- transactions and snapshots -----------------------------------------------------------

    async def wait_for_txid(self, txid: str, timeout: float = 5.0) -> None:
        """Return once the view applied the changes of transaction ``txid``.

        Returns at once for a txid among the last ``max_txids`` seen (also
        before a restart, through the snapshot). Raises
        :class:`TxidTimeoutError` after ``timeout`` seconds and
        :class:`StateClosedError` if the view stops following first. Needs a
        following view (``async with`` or :meth:`follow`).

        Example::

            await producer.send(users.insert(user, txid=txid))
            await room.wait_for_txid(txid, timeout=5)
            assert room.users.get(user.id) is not None
        """
        if txid in self._txids:
            return
        if not self._following or self._stopped:
            raise self._closed_error(f"cannot wait for txid {txid!r}: the view is not following")
        event = anyio.Event()
        self._txid_waiters.setdefault(txid, []).append(event)
        try:
            with anyio.fail_after(timeout):
                await event.wait()
        except TimeoutError:
            raise TxidTimeoutError(
                f"txid {txid!r} not seen within {timeout} s (view at {self.position})"
            ) from None
        finally:
            waiters = self._txid_waiters.get(txid)
            if waiters is not None and event in waiters:
                waiters.remove(event)
                if not waiters:
                    del self._txid_waiters[txid]
        if txid not in self._txids:
            raise self._closed_error(f"the view stopped before txid {txid!r} was seen")

    def _closed_error(self, message: str) -> StateClosedError:
        error = StateClosedError(message + (" (stream closed)" if self._closed else ""))
        error.__cause__ = self._error
        return error

    def snapshot(self) -> Snapshot:
        """The view as a :class:`Snapshot`: its state, position and recent txids.

        Example::

            await store.save("room-42", room.snapshot())
        """
        return Snapshot(self.position, self._state.to_data(), tuple(self._txids))

    async def save_snapshot(self) -> Snapshot:
        """Save :meth:`snapshot` to the view's store under its name (and return it).

        Example::

            await room.save_snapshot()
        """
        if self._snapshots is None:
            raise UsageError("this StreamState has no snapshot store (pass snapshots=...)")
        snapshot = self.snapshot()
        self._last_save = time.monotonic()
        if snapshot.position != self._saved_position:
            await self._snapshots.save(self._snapshot_name, snapshot)
            self._saved_position = snapshot.position
        return snapshot


async def _call(hook: Callable[[Any], Awaitable[object] | object], argument: Any) -> None:
    outcome = hook(argument)
    if inspect.isawaitable(outcome):
        await outcome
