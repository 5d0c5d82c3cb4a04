"""The sync ``Consumer``: the async consumer on the shared loop, in lock step with one thread.

A consumer's promise is that an item counts as handled only once your code
for it has finished. So unlike a read, nothing is read ahead: the async
consumer runs as one task on the shared loop and hands each item (or list) to
the calling thread through a :class:`_Handover`, then waits until that thread
asks for the next one (loop body) or reports the handler's outcome (``run``).
Everything else, positions, commits, ``on_error``, retries, is the async
consumer's own code.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import pydantic

from durable_streams import (
    OFFSET_START,
    CheckpointKey,
    CheckpointStore,
    CommitEvery,
    LiveMode,
    OnError,
    OnItemError,
    Position,
    UsageError,
)
from durable_streams import Consumer as AsyncConsumer

from ._handle import StreamHandle
from ._portal import call, get_portal, remaining, run_sync, stop_cancelled, timed_out

__all__ = ["Consumer"]

T = TypeVar("T")


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Handover:
    """One task on the shared loop handing items, one at a time, to one waiting thread.

    ``hand(item)`` (loop side) returns once the thread called ``reply()``, raising
    the error the thread reported, so the async consumer sees the thread's
    outcome as its own. ``take()`` (thread side) waits for the next item or the
    task's end and honours :func:`~durable_streams.sync.fail_after` deadlines.
    """

    def __init__(self, work: Callable[[_Handover], Awaitable[None]]) -> None:
        self._cond = threading.Condition()
        self._item: tuple[Any] | None = None
        self._end: _End | None = None
        self._reply: anyio.Event | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._stopped = False  # stop() ended it: the iteration is over, not failed
        self._future = get_portal().start_task_soon(self._run, work)

    async def _run(self, work: Callable[[_Handover], Awaitable[None]]) -> None:
        error: BaseException | None = None
        try:
            await work(self)
        except anyio.get_cancelled_exc_class():
            if not self._stopped:  # not by stop(): the loop itself is going away
                error = UsageError("the consumer was cancelled (the sync event loop is stopping)")
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self._cond:
                self._end = _End(error)
                self._cond.notify()
            self._done.set()

    async def hand(self, item: Any) -> None:
        reply = anyio.Event()
        with self._cond:
            self._item, self._reply, self._error = (item,), reply, None
            self._cond.notify()
        await reply.wait()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def take(self) -> tuple[Any] | _End:
        if self._stopped:
            return _End(None)
        with self._cond:
            while self._item is None and self._end is None:
                if not self._cond.wait(remaining()) and self._item is None and self._end is None:
                    raise timed_out()
            if self._item is not None:
                item, self._item = self._item, None
                return item
            assert self._end is not None
            return self._end

    def reply(self, error: BaseException | None = None) -> None:
        with self._cond:
            reply, self._reply, self._error = self._reply, None, error
        if reply is not None:
            run_sync(reply.set)

    def stop(self) -> None:
        """Cancel the task if it still runs (the consumer then saves what completed)."""
        self._stopped = True
        if not self._done.is_set():
            stop_cancelled(self._future, self._done)


class Consumer:
    """Process a JSON stream from a stored position, in code that is not async.

    :class:`durable_streams.Consumer` (same options, checkpoint stores,
    commit policy, ``on_error`` and guarantees) with blocking calls and plain
    iterators. An item counts as handled once your loop body (or handler) for
    it has finished: nothing is read ahead of your code. ``on_error`` and the
    checkpoint store run on the background event loop thread; loop bodies
    and handlers run on yours. ``KeyboardInterrupt`` or a
    :func:`~durable_streams.sync.fail_after` deadline ends the iteration;
    what completed is saved.

    Example::

        from durable_streams import SQLiteCheckpoints
        from durable_streams.sync import Consumer, StreamHandle

        with StreamHandle(url) as handle, Consumer(
            handle, name="billing", checkpoints=SQLiteCheckpoints("state.db")
        ) as consumer:
            for order in consumer.iter_json():
                bill(order)
    """

    def __init__(
        self,
        handle: StreamHandle,
        *,
        name: str,
        checkpoints: CheckpointStore,
        live: LiveMode = False,
        start: Position | str = OFFSET_START,
        commit_every: CommitEvery | int | None = CommitEvery(),  # noqa: B008 (frozen)
        on_error: OnItemError | None = None,
        read_on_error: OnError | None = None,
    ) -> None:
        if not isinstance(handle, StreamHandle):
            raise UsageError(
                "durable_streams.sync.Consumer reads through a durable_streams.sync.StreamHandle"
            )
        self._consumer = AsyncConsumer(
            handle.async_handle,
            name=name,
            checkpoints=checkpoints,
            live=live,
            start=start,
            commit_every=commit_every,
            on_error=on_error,
            read_on_error=read_on_error,
        )
        self._handover: _Handover | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self._consumer.name

    @property
    def key(self) -> CheckpointKey:
        """What the consumer's position is saved under."""
        return self._consumer.key

    @property
    def position(self) -> Position:
        """Where to resume once the current item is handled (in a loop body: just after it)."""
        return self._consumer.position

    @property
    def committed(self) -> Position | None:
        """The position last saved to (or loaded from) the store."""
        return self._consumer.committed

    @property
    def caught_up(self) -> bool:
        """Whether the items handed out so far reached the stream's tail."""
        return self._consumer.caught_up

    @property
    def async_consumer(self) -> AsyncConsumer:
        """The async consumer this one drives (it belongs to the background loop)."""
        return self._consumer

    def __repr__(self) -> str:
        return f"sync.{self._consumer!r}"

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Load the saved position (or resolve ``start``); ``with`` calls it.

        Example::

            consumer.open()
            try:
                consumer.run(bill)
            finally:
                consumer.close()
        """
        call(self._consumer.open)

    def close(self) -> None:
        """End an iteration in progress and save what was handled; ``with`` calls it.

        Example::

            consumer.close()
        """
        handover = self._handover
        if handover is not None:
            handover.stop()
        call(self._consumer.aclose)

    def __enter__(self) -> Consumer:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stop(self) -> None:
        """End the iteration after the item being handled (call it from the loop body).

        Example::

            for event in consumer.iter_json():
                if event["type"] == "shutdown":
                    consumer.stop()
        """
        self._consumer.stop()

    def seek(self, position: Position | str) -> Position:
        """Move to ``position`` (``"-1"``, ``"now"``, an offset or a Position) and save it.

        Example::

            consumer.seek("now")
        """
        return call(self._consumer.seek, position)

    def commit(self) -> None:
        """Save the position of what was handled now.

        Example::

            consumer.commit()
        """
        call(self._consumer.commit)

    # -- consumption -------------------------------------------------------------------------

    @overload
    def iter_json(self, model: None = None) -> Generator[Any, None, None]: ...
    @overload
    def iter_json(self, model: type[T] | pydantic.TypeAdapter[T]) -> Generator[T, None, None]: ...

    def iter_json(self, model: Any = None) -> Generator[Any, None, None]:
        """The items from the consumer's position on, validated by ``model`` if given.

        Example::

            for order in consumer.iter_json(model=Order):
                bill(order)
        """
        return self._loop_over(self._consumer.iter_json(model))

    @overload
    def iter_batches(
        self, max_items: int = 1000, *, model: None = None
    ) -> Generator[list[Any], None, None]: ...
    @overload
    def iter_batches(
        self, max_items: int = 1000, *, model: type[T] | pydantic.TypeAdapter[T]
    ) -> Generator[list[T], None, None]: ...

    def iter_batches(
        self, max_items: int = 1000, *, model: Any = None
    ) -> Generator[list[Any], None, None]:
        """The items in lists of at most ``max_items`` (never waits to fill one).

        Example::

            for orders in consumer.iter_batches(500):
                db.insert_many(orders)
        """
        return self._loop_over(self._consumer.iter_batches(max_items, model=model))

    def run(
        self,
        handler: Callable[[Any], object],
        *,
        model: type[Any] | pydantic.TypeAdapter[Any] | None = None,
    ) -> None:
        """Call ``handler(item)`` on this thread for each item; a failing handler goes
        to ``on_error`` (default: raised). Returns when the iteration ends.

        Example::

            consumer.run(bill, model=Order)
        """

        async def work(handover: _Handover) -> None:
            await self._consumer.run(handover.hand, model=model)

        self._serve(handler, work)

    def run_batches(
        self,
        handler: Callable[[list[Any]], object],
        *,
        max_items: int = 1000,
        model: type[Any] | pydantic.TypeAdapter[Any] | None = None,
    ) -> None:
        """Call ``handler(items)`` on this thread with lists of at most ``max_items``.

        Example::

            consumer.run_batches(db.insert_many, max_items=500)
        """

        async def work(handover: _Handover) -> None:
            await self._consumer.run_batches(handover.hand, max_items=max_items, model=model)

        self._serve(handler, work)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, work: Callable[[_Handover], Awaitable[None]]) -> _Handover:
        if self._handover is not None:
            raise UsageError(
                "this consumer is already iterating: one iteration at a time (end the other first)"
            )
        handover = self._handover = _Handover(work)
        return handover

    def _loop_over(self, source: AsyncGenerator[Any, None]) -> Generator[Any, None, None]:
        # The async iterator is made here, so misuse (not open, already iterating)
        # raises at the call; the generator below starts on the first next().
        async def work(handover: _Handover) -> None:
            try:
                async for item in source:
                    await handover.hand(item)
            finally:
                with anyio.CancelScope(shield=True):  # its finally saves what completed
                    await source.aclose()

        return self._iterate(work)

    def _iterate(self, work: Callable[[_Handover], Awaitable[None]]) -> Generator[Any, None, None]:
        handover = self._start(work)
        try:
            while True:
                got = handover.take()
                if isinstance(got, _End):
                    if got.error is not None:
                        raise got.error
                    return
                yield got[0]
                handover.reply()  # the body completed: the item is handled
        finally:
            handover.stop()  # a break, an error or a deadline: the item is not handled
            self._handover = None

    def _serve(self, handler: Callable[[Any], object], work: Callable[[_Handover], Any]) -> None:
        handover = self._start(work)
        try:
            while True:
                got = handover.take()
                if isinstance(got, _End):
                    if got.error is not None:
                        raise got.error
                    return
                try:
                    handler(got[0])
                except Exception as error:  # on_error (on the loop) decides what follows
                    handover.reply(error)
                else:
                    handover.reply()
        finally:
            handover.stop()
            self._handover = None
