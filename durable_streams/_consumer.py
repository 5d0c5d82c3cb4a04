"""Consumer: the processing loop that resumes from a stored position after any crash.

A :class:`Consumer` reads a JSON stream from where it left off (a
:class:`~durable_streams.Position` loaded from a checkpoint store), hands the
items to your code and saves the position of what your code completed:

- **commit after handle**: an item counts as handled once the loop body (or the
  handler) for it completes, that is when the next item is requested. Positions
  are saved inline at those moments, never from a background task, so a save
  never races your own transaction.
- **when**: every ``commit_every`` items and/or seconds, before waiting for live
  data (the item just handled reached the tail), and when the loop ends: at the
  end of the data, on ``stop()``, on cancellation and on errors (what completed).
- **at-least-once** by default: after a crash only the items handled since the
  last save are seen again. **Exactly-once effects**: save the position in the
  same transaction as your writes (``SQLiteCheckpoints.save_in``, or your own
  store) with ``commit_every=None``.

It is built on the public read API (``handle.stream(offset=position)``,
``res.iter_json()``, ``res.position``): no read loop of its own.
"""

from __future__ import annotations

import enum
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import pydantic

from . import _protocol as p
from . import _telemetry
from ._checkpoints import CheckpointKey, CheckpointStore
from ._errors import (
    BadRequestError,
    DurableStreamError,
    GoneError,
    InvalidArgumentError,
    NotFoundError,
    PositionRejectedError,
    UsageError,
    ValidationError,
)
from ._handle import StreamHandle
from ._position import Position
from ._redact import excerpt, redact_url
from ._response import StreamResponse
from ._types import LiveMode, OnError

__all__ = ["CommitEvery", "Consumer", "FailureAction", "ItemFailure", "OnItemError"]

T = TypeVar("T")

logger = logging.getLogger("durable_streams")


@dataclass(frozen=True, slots=True)
class CommitEvery:
    """How often a :class:`Consumer` saves its position while items keep coming.

    A save happens once ``items`` items were handled since the last one, or
    once ``seconds`` passed since it (checked when an item completes); None
    turns a limit off. Independently of this policy the consumer always saves
    before it waits for live data and when its loop ends.

    Example::

        Consumer(handle, name="billing", checkpoints=store, commit_every=CommitEvery(items=1000))
    """

    items: int | None = 100
    seconds: float | None = 1.0

    def __post_init__(self) -> None:
        if self.items is not None and (
            isinstance(self.items, bool) or not isinstance(self.items, int) or self.items < 1
        ):
            raise InvalidArgumentError("CommitEvery.items must be None or >= 1", field="items")
        if self.seconds is not None and (
            isinstance(self.seconds, bool)
            or not isinstance(self.seconds, (int, float))
            or not self.seconds > 0
            or self.seconds == float("inf")
        ):
            raise InvalidArgumentError("CommitEvery.seconds must be None or > 0", field="seconds")


class FailureAction(enum.Enum):
    """What ``on_error`` decides for an item whose handler failed (or that does not validate)."""

    #: Count the item as handled (its position is committed) and go on with the next.
    SKIP = "skip"
    #: Call the handler again with the same item (``ItemFailure.attempt`` counts the calls).
    RETRY = "retry"
    #: Stop the consumer: the error is raised (what completed before it is committed).
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """What ``on_error`` is told: the error, the item (a list for batch handlers) and
    how many times handling it failed so far (1 on the first failure)."""

    error: Exception
    item: Any
    attempt: int


OnItemError = Callable[[ItemFailure], "FailureAction | Awaitable[FailureAction]"]
"""``on_error`` of a :class:`Consumer`: sync or async, returns a :class:`FailureAction`
(raising stops the consumer with that error)."""

_START = Position(p.OFFSET_START)

# The commit policy's clock, looked up through this name so tests can move time.
_clock = time.monotonic


class Consumer:
    """Process a JSON stream from a stored position: the loop that survives crashes.

    ``name`` identifies the consumer: its position is saved in ``checkpoints``
    under the consumer name and the stream URL (see :class:`CheckpointKey`).
    Without a saved position it starts at ``start``: ``"-1"`` (the beginning,
    default), ``"now"`` (the tail, resolved and saved when the consumer opens),
    a stored offset or a :class:`Position`. ``live`` is as for
    ``handle.stream()``: ``False`` stops at the tail, ``"auto"`` (or
    ``"long-poll"``, ``"sse"``, ``True``) follows new data until the stream
    closes, retrying through server outages.

    Consume with ``async for item in consumer.iter_json(model=...)`` (or
    ``iter_batches``), or ``await consumer.run(handler)`` (or ``run_batches``).
    An item is handled once the loop body (or handler) for it completes: then
    its position may be saved. A body that raises, ``break``, ``return`` or a
    cancellation leaves its item unhandled (seen again after a restart); call
    :meth:`stop` inside the body to end the loop after the current item.

    ``commit_every`` (a :class:`CommitEvery`, or an int for ``CommitEvery(items=n)``)
    says how often the position is saved; it is also saved before waiting for
    live data and whenever the loop ends. ``commit_every=None``: the consumer
    never saves, you do, inside your own transaction (exactly-once effects; see
    :meth:`SQLiteCheckpoints.save_in`).

    ``on_error(failure)`` decides what a failing handler (``run``/``run_batches``)
    or an item that fails ``model`` validation leads to: :class:`FailureAction`
    ``SKIP``, ``RETRY`` or ``STOP`` (the default without ``on_error``: the error
    is raised). ``read_on_error`` is the ``on_error`` of the underlying reads.

    If the server will not read from the consumer's position (the stream was
    deleted, its data expired, or the stored position is not one it issued),
    iteration raises :class:`PositionRejectedError`: ``await
    consumer.seek("-1")`` or ``await consumer.seek("now")`` restarts from the
    start or the tail.

    Example::

        store = SQLiteCheckpoints("state.db")
        async with Consumer(handle, name="billing", checkpoints=store, live="auto") as consumer:
            async for order in consumer.iter_json(model=Order):
                await bill(order)
    """

    def __init__(
        self,
        handle: StreamHandle,
        *,
        name: str,
        checkpoints: CheckpointStore,
        live: LiveMode = False,
        start: Position | str = p.OFFSET_START,
        commit_every: CommitEvery | int | None = CommitEvery(),
        on_error: OnItemError | None = None,
        read_on_error: OnError | None = None,
    ) -> None:
        if not isinstance(handle, StreamHandle):
            raise InvalidArgumentError("a Consumer reads through a StreamHandle", field="handle")
        if not isinstance(checkpoints, CheckpointStore):
            raise InvalidArgumentError(
                "checkpoints must be a checkpoint store (async load(key) and save(key, position))",
                field="checkpoints",
            )
        if on_error is not None and not callable(on_error):
            raise InvalidArgumentError("on_error must be callable", field="on_error")
        if isinstance(commit_every, int) and not isinstance(commit_every, bool):
            commit_every = CommitEvery(items=commit_every)
        if commit_every is not None and not isinstance(commit_every, CommitEvery):
            raise InvalidArgumentError(
                "commit_every must be a CommitEvery, an int (items) or None", field="commit_every"
            )
        self._handle = handle
        self._key = CheckpointKey.for_stream(name, handle.url)
        self._store = checkpoints
        self._live: LiveMode = live
        self._start = _as_position(start, field="start", allow_now=True)
        self._policy = commit_every
        self._on_error = on_error
        self._read_on_error = read_on_error
        self._entered = False
        self._closed = False
        self._committed: Position | None = None  # last position saved (or loaded)
        # After the item handed out last (_base + _count items), after the last handled one.
        self._base = self._done_base = _START
        self._count = self._done_count = 0
        self._pending = 0  # items handled since the last save
        self._last_save = _clock()
        self._response: StreamResponse | None = None  # the read in progress
        self._iterator: AsyncGenerator[Any, None] | None = None  # the iteration in progress
        self._stopping = False
        self._caught_up = False
        self._in_body = False  # an item (or list) is handed out and its body has not completed

    # -- state ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self._key.consumer

    @property
    def key(self) -> CheckpointKey:
        """What the consumer's position is saved under (for ``save_in`` and your own stores)."""
        return self._key

    @property
    def position(self) -> Position:
        """Where to resume once the current item is handled.

        Inside a loop body (or handler) it is the position just after the item
        (or batch) being handled: save it in the same transaction as the item's
        effects for exactly-once processing. Between iterations it is where the
        next one starts.
        """
        if self._in_body:
            return self._after()
        return self._done

    @property
    def committed(self) -> Position | None:
        """The position last saved to (or loaded from) the store; None if there is none."""
        return self._committed

    @property
    def caught_up(self) -> bool:
        """Whether the items handed out so far reached the stream's tail."""
        return self._caught_up

    @property
    def live(self) -> LiveMode:
        return self._live

    def __repr__(self) -> str:
        return f"Consumer({self.name!r}, {self._key.stream!r}, position={str(self.position)!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Consumer:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Load the saved position (or resolve ``start``). ``async with`` calls it.

        Example::

            consumer = Consumer(handle, name="billing", checkpoints=store)
            await consumer.open()
            try:
                await consumer.run(handle_order)
            finally:
                await consumer.aclose()
        """
        if self._entered:
            raise UsageError("this consumer is already open")
        self._entered = True
        if _telemetry.OTEL is not None:  # reported by the caught_up gauge while it lives
            _telemetry.OTEL.watch_consumer(self)
        stored = await self._store.load(self._key)
        where = redact_url(self._handle.url)
        if stored is not None:
            self._committed = stored
            self._moved_to(stored)
            logger.info("consumer %r: resuming %s at %s (saved)", self.name, where, stored)
            return
        if self._start.offset == p.OFFSET_NOW:
            # Resolved now and saved: a restart must not skip what arrives meanwhile.
            await self.seek(p.OFFSET_NOW)
        else:
            self._moved_to(self._start)
        logger.info(
            "consumer %r: starting %s at %s (no saved position)", self.name, where, self._done
        )

    async def aclose(self) -> None:
        """End an iteration in progress and save what was handled (``async with`` calls it)."""
        if self._closed:
            return
        self._closed = True
        if _telemetry.OTEL is not None:
            _telemetry.OTEL.forget_consumer(self)
        iterator = self._iterator
        if iterator is not None:
            with anyio.CancelScope(shield=True):
                await iterator.aclose()  # its finally saves what completed

    def stop(self) -> None:
        """End the iteration after the item being handled (its position is then saved).

        Call it from the loop body or a handler. (To stop a consumer waiting for
        live data from elsewhere, cancel its task: what completed is saved.)

        Example::

            async for event in consumer.iter_json():
                if event["type"] == "shutdown":
                    consumer.stop()
        """
        self._stopping = True

    async def seek(self, position: Position | str) -> Position:
        """Move the consumer to ``position`` and save it at once (the only way back).

        ``"-1"`` is the start of the stream, ``"now"`` its current tail (asked
        with ``handle.head()``); a plain string is an offset. The remedy for
        :class:`PositionRejectedError`. Not allowed while an iteration is open.

        Example::

            try:
                await consumer.run(handle_event)
            except PositionRejectedError:
                await consumer.seek("now")   # skip what is lost, go on from the tail
                await consumer.run(handle_event)
        """
        self._check_open()
        if self._iterator is not None:
            raise UsageError("seek() while an iteration is open: end the loop first")
        target = _as_position(position, field="position", allow_now=True)
        if target.offset == p.OFFSET_NOW:
            info = await self._handle.head()
            if not info.next_offset:
                raise DurableStreamError(
                    f"HEAD of {self._key.stream} gave no tail offset", url=self._handle.url
                )
            target = Position(info.next_offset)
        await self._store.save(self._key, target)
        self._committed = target
        self._moved_to(target)
        self._pending = 0
        self._last_save = _clock()
        self._caught_up = False
        return target

    async def commit(self) -> None:
        """Save the position of what was handled now (also with ``commit_every=None``).

        Example::

            async for item in consumer.iter_json():
                await handle(item)
                if item["important"]:
                    await consumer.commit()   # this item is done: saves just after it
        """
        self._check_open()
        await self._save(self.position)

    # -- consumption ---------------------------------------------------------------------------

    @overload
    def iter_json(self, model: None = None) -> AsyncGenerator[Any, None]: ...
    @overload
    def iter_json(self, model: type[T] | pydantic.TypeAdapter[T]) -> AsyncGenerator[T, None]: ...

    def iter_json(self, model: Any = None) -> AsyncGenerator[Any, None]:
        """The items from the consumer's position on, validated by ``model`` if given.

        An item is handled (its position may be saved) once the loop body for it
        completes. Ends at the tail (``live=False``), at EOF, or after :meth:`stop`.

        Example::

            async for order in consumer.iter_json(model=Order):
                await bill(order)
        """
        return self._begin(self._items(_adapter(model)))

    @overload
    def iter_batches(
        self, max_items: int = 1000, *, model: None = None
    ) -> AsyncGenerator[list[Any], None]: ...
    @overload
    def iter_batches(
        self, max_items: int = 1000, *, model: type[T] | pydantic.TypeAdapter[T]
    ) -> AsyncGenerator[list[T], None]: ...

    def iter_batches(
        self, max_items: int = 1000, *, model: Any = None
    ) -> AsyncGenerator[list[Any], None]:
        """The items in lists of at most ``max_items`` (what is at hand: it never waits
        to fill a list). A list is handled once the loop body for it completes.

        Example::

            async for orders in consumer.iter_batches(500, model=Order):
                await db.insert_many(orders)
        """
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise InvalidArgumentError("max_items must be an int >= 1", field="max_items")
        return self._begin(self._batches(_adapter(model), max_items))

    async def run(
        self,
        handler: Callable[[Any], Awaitable[object] | object],
        *,
        model: type[Any] | pydantic.TypeAdapter[Any] | None = None,
    ) -> None:
        """Call ``handler(item)`` (sync or async) for each item; returns when the
        iteration ends. A failing handler goes to ``on_error`` (default: raised).

        Example::

            async def bill(order: Order) -> None: ...

            await consumer.run(bill, model=Order)
        """
        async with aclosing(self.iter_json(model)) as items:
            async for item in items:
                await self._handle_one(handler, item)

    async def run_batches(
        self,
        handler: Callable[[list[Any]], Awaitable[object] | object],
        *,
        max_items: int = 1000,
        model: type[Any] | pydantic.TypeAdapter[Any] | None = None,
    ) -> None:
        """Call ``handler(items)`` with lists of at most ``max_items`` items.

        Example::

            await consumer.run_batches(insert_many, max_items=500)
        """
        async with aclosing(self.iter_batches(max_items, model=model)) as batches:
            async for batch in batches:
                await self._handle_one(handler, batch)

    # -- internals -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._entered:
            raise UsageError("use the consumer in `async with Consumer(...)` (or call open())")
        if self._closed:
            raise UsageError("this consumer is closed")

    def _begin(self, iterator: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        self._check_open()
        if self._iterator is not None:
            raise UsageError(
                "this consumer is already iterating: one iteration at a time (end the other first)"
            )
        self._iterator = iterator
        self._stopping = False
        return iterator

    async def _handle_one(self, handler: Callable[[Any], Any], item: Any) -> None:
        attempt = 1
        while True:
            try:
                outcome = handler(item)
                if inspect.isawaitable(outcome):
                    await outcome
                return
            except Exception as error:
                action = await self._decide(error, item, attempt)
                if action is FailureAction.SKIP:
                    return
                if action is FailureAction.STOP:
                    raise
                attempt += 1

    async def _decide(self, error: Exception, item: Any, attempt: int) -> FailureAction:
        if self._on_error is None:
            return FailureAction.STOP
        decision: Any = self._on_error(ItemFailure(error, item, attempt))
        if inspect.isawaitable(decision):
            decision = await decision
        if not isinstance(decision, FailureAction):
            raise InvalidArgumentError(
                f"on_error must return a FailureAction, not {type(decision).__name__}",
                field="on_error",
            ) from error
        return decision

    async def _validated(
        self, adapter: pydantic.TypeAdapter[Any], raw: Any, response: StreamResponse
    ) -> tuple[bool, Any]:
        """``(True, item)`` for a valid item, ``(False, None)`` for one skipped by ``on_error``."""
        try:
            return True, adapter.validate_python(raw)
        except pydantic.ValidationError as exc:
            where = response.position
            error = ValidationError(
                f"an item of consumer {self.name!r} does not validate (resume position "
                f"{excerpt(str(where))}): {excerpt(str(exc), 500)}",
                offset=where.offset,
                url=self._handle.url,
            )
            error.__cause__ = exc
        action = await self._decide(error, raw, 1)
        if action is FailureAction.SKIP:
            return False, None
        if action is FailureAction.RETRY:
            raise InvalidArgumentError(
                "on_error returned RETRY for an item that does not validate: "
                "validating it again cannot succeed (return SKIP or STOP)",
                field="on_error",
            ) from error
        raise error

    # Where the consumer is, without building a Position per item (the hot path): the
    # position after the item handed out last is ``_base`` shifted by ``_count`` items,
    # where ``_base`` is the response's position when its offset last moved. Items of
    # one response at one offset are consecutive, so each is one item further.

    def _track(self, response: StreamResponse) -> None:
        """The item just received from ``response``: where the position after it is."""
        if response.offset != self._base.offset:
            self._base = response.position  # the offset moved: a response ended (or began)
            self._count = 0
        else:
            self._count += 1

    def _after(self) -> Position:
        """The position after the item (or list) handed out last."""
        return _shift(self._base, self._count)

    def _handled(self, items: int, tail: bool) -> bool:
        """The body for what was handed out last completed; whether to save now."""
        self._in_body = False
        self._done_base = self._base
        self._done_count = self._count
        self._caught_up = tail
        self._pending += items
        policy = self._policy
        if policy is None:
            return False
        if tail:
            return True  # the next read may wait for live data: save before waiting
        if policy.items is not None and self._pending >= policy.items:
            return True
        return policy.seconds is not None and _clock() - self._last_save >= policy.seconds

    def _ends_response(self) -> bool:
        """Whether the item handed out last was the last of its response."""
        return self._count == 0 and self._base.skip == 0

    @property
    def _done(self) -> Position:
        """After the last handled item: what may be saved."""
        return _shift(self._done_base, self._done_count)

    def _moved_to(self, position: Position) -> None:
        self._done_base = self._base = position
        self._done_count = self._count = 0

    def _ended(self, response: StreamResponse) -> None:
        """The read ended by itself (tail or EOF): everything it handed out was handled."""
        self._moved_to(response.position)
        self._caught_up = response.up_to_date

    async def _save(self, position: Position) -> None:
        otel = _telemetry.OTEL
        if position == self._committed:
            if otel is not None:
                otel.handled(self.name, self._pending)
            self._pending = 0
            return
        if otel is None:
            await self._store.save(self._key, position)
        else:
            commit = otel.start_commit(self.name, self._pending, position.offset)
            try:
                await self._store.save(self._key, position)
            except BaseException as error:
                otel.end_commit(commit, self.name, error)
                raise
            otel.end_commit(commit, self.name, None)
            otel.handled(self.name, self._pending)
        self._committed = position
        self._pending = 0
        self._last_save = _clock()

    async def _finish(self) -> None:
        """When an iteration ends, however it ends: save what completed."""
        self._in_body = False
        self._iterator = None
        self._response = None
        done = self._done
        self._moved_to(done)  # an item handed out but not handled is read again
        if self._policy is not None and done != self._committed:
            with anyio.CancelScope(shield=True):
                await self._save(done)
        elif self._policy is None and _telemetry.OTEL is not None:
            _telemetry.OTEL.handled(self.name, self._pending)  # saved by the application
            self._pending = 0

    async def _read(self) -> StreamResponse:
        """Open a read at the consumer's position (rejections become PositionRejectedError)."""
        try:
            response = await self._handle.stream(
                offset=self._done, live=self._live, on_error=self._read_on_error
            )
        except DurableStreamError as error:
            rejected = self._rejected(error)
            if rejected is error:
                raise
            raise rejected from error
        self._response = response
        self._moved_to(response.position)
        return response

    def _rejected(self, error: DurableStreamError) -> DurableStreamError:
        refused = isinstance(error, (NotFoundError, GoneError, BadRequestError))
        if not refused or error.status is None:
            return error
        return PositionRejectedError(
            f"the server will not read stream {self._key.stream} from position "
            f"{excerpt(str(self._done))} of consumer {self.name!r} "
            f"({error.status}: {error.message}); "
            "restart with `await consumer.seek('-1')` (from the start) or "
            "`await consumer.seek('now')` (from the tail)",
            reason=error,
            position=self._done,
            consumer=self.name,
            status=error.status,
            url=error.url,
            headers=error.headers,
            body=error.body,
        )

    async def _items(self, adapter: pydantic.TypeAdapter[Any] | None) -> AsyncGenerator[Any, None]:
        try:
            response = await self._read()
            async with response:
                raw_items = response.iter_json()
                policy = self._policy
                limit = (policy.items or 0) if policy is not None else 0  # 0: no item limit
                seconds = policy.seconds if policy is not None else None
                try:
                    async for raw in raw_items:
                        # The hot path: _track() and _handled() inlined.
                        if response.offset != self._base.offset:
                            self._base = response.position  # a response ended (or began)
                            self._count = 0
                        else:
                            self._count += 1
                        item = raw
                        if adapter is not None:
                            valid, item = await self._validated(adapter, raw, response)
                            if not valid:  # skipped: handled without a body
                                tail = self._ends_response() and response.up_to_date
                                if self._handled(1, tail):
                                    await self._save(self._after())
                                continue
                        self._in_body = True
                        yield item
                        # The loop body for `item` completed.
                        self._in_body = False
                        self._done_base = self._base
                        self._done_count = count = self._count
                        self._pending += 1
                        # At the tail the next read may wait for live data: save before.
                        tail = self._caught_up = (
                            count == 0 and self._base.skip == 0 and response.up_to_date
                        )
                        if policy is not None and (
                            tail
                            or (limit and self._pending >= limit)
                            or (seconds is not None and _clock() - self._last_save >= seconds)
                        ):
                            await self._save(self._after())
                        if self._stopping:
                            return
                    self._ended(response)
                except DurableStreamError as error:
                    rejected = self._rejected(error)
                    if rejected is error:
                        raise
                    raise rejected from error
                finally:
                    await raw_items.aclose()  # type: ignore[attr-defined]
        finally:
            await self._finish()

    async def _batches(
        self, adapter: pydantic.TypeAdapter[Any] | None, max_items: int
    ) -> AsyncGenerator[list[Any], None]:
        try:
            response = await self._read()
            async with response:
                raw_items = response.iter_json()
                batch: list[Any] = []
                size = 0  # items the list stands for (with those skipped by on_error)
                try:
                    async for raw in raw_items:
                        self._track(response)
                        size += 1
                        if adapter is None:
                            batch.append(raw)
                        else:
                            valid, item = await self._validated(adapter, raw, response)
                            if valid:
                                batch.append(item)
                        # A list ends when full, or with its response: the next item
                        # may need another request, which may wait for live data.
                        ends = self._ends_response()
                        if len(batch) < max_items and not ends:
                            continue
                        if batch:
                            self._in_body = True
                            yield batch
                        # The loop body for `batch` completed.
                        if self._handled(size, ends and response.up_to_date):
                            await self._save(self._after())
                        batch, size = [], 0
                        if self._stopping:
                            return
                    if size:  # every response ends a list: not expected, but never lost
                        if batch:
                            self._in_body = True
                            yield batch
                        self._handled(size, False)
                    self._ended(response)
                except DurableStreamError as error:
                    rejected = self._rejected(error)
                    if rejected is error:
                        raise
                    raise rejected from error
                finally:
                    await raw_items.aclose()  # type: ignore[attr-defined]
        finally:
            await self._finish()


def _shift(base: Position, count: int) -> Position:
    """``count`` items (or bytes) after ``base``."""
    if count == 0:
        return base
    return Position(base.offset, base.skip + count, base.unit)


def _adapter(model: Any) -> pydantic.TypeAdapter[Any] | None:
    if model is None or isinstance(model, pydantic.TypeAdapter):
        return model
    return pydantic.TypeAdapter(model)


def _as_position(value: Position | str, *, field: str, allow_now: bool) -> Position:
    if isinstance(value, Position):
        return value
    if isinstance(value, str) and value:
        if value == p.OFFSET_NOW and not allow_now:
            raise InvalidArgumentError(f"{field} cannot be 'now' here", field=field)
        return Position(value)
    raise InvalidArgumentError(
        f"{field} must be a Position, '-1', 'now' or a stored offset string", field=field
    )
