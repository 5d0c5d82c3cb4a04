"""``IdempotentProducer``: fire-and-forget appends, batched, pipelined and exactly-once.

The public face of the producer: options, lifecycle (one anyio task group per
producer), ``append``/``send``/``flush``/``close``. Batching and buffer
accounting live in :mod:`._accumulator` (no I/O), sequence numbers, epochs,
the pipeline and retries in :mod:`._sender`, and the option checks in
:mod:`._options`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from . import _protocol as p
from . import _telemetry
from ._accumulator import Accumulator, Waiter
from ._codec import encode_item, items_of, json_error
from ._errors import (
    EmptyAppendError,
    InvalidArgumentError,
    ProducerBufferFullError,
    ProducerClosedError,
    ProducerError,
    ProducerFlushError,
)
from ._handle import StreamHandle
from ._models import CloseResult, ProducerAck, ProducerStats
from ._options import check_producer_options
from ._redact import redact_url
from ._retry import RetryPolicy
from ._sender import Sender, next_auto_epoch
from ._threads import LoopGoneError, forks, run_soon
from ._types import HeadersArg, ParamsArg, ProducerIdentity, ProducerOnError

__all__ = ["IdempotentProducer"]

logger = logging.getLogger("durable_streams")

MIB = 1024 * 1024
_MISSING: Any = object()


class _State(enum.Enum):
    """The producer's lifecycle: NEW -> RUNNING -> STOPPING -> STOPPED."""

    NEW = "new"
    RUNNING = "running"  # takes items
    STOPPING = "stopping"  # flushing (and maybe closing) before it stops
    STOPPED = "stopped"


class IdempotentProducer:
    """Fire-and-forget writer with batching, pipelining and exactly-once retries.

    A batch is sent when it reaches ``max_batch_bytes`` or ``max_batch_items``,
    or ``linger_ms`` after its first item; one item larger than
    ``max_batch_bytes`` goes alone. Up to ``max_in_flight`` batches are in
    flight, each with its own ``Producer-Seq``, their bodies written in seq
    order; the producer starts with 2 and sends more ahead while the server
    takes them in order (fewer after a 409 gap). Network errors, timeouts, 5xx
    and 429 are retried with the same ``(producer id, epoch, seq)`` and bytes
    under ``retry`` (the handle's policy by default; ``Retry-After`` honoured).

    Backpressure: ``append()`` never waits; it raises
    :class:`ProducerBufferFullError` once ``max_buffered_bytes`` of unacknowledged
    data are held. ``await send(...)`` and ``await wait_for_capacity()`` wait
    for room instead.

    Failures: a batch that fails for good (a non-retryable status, or retries
    exhausted) is passed to ``on_error(error, failure)`` and listed by the
    :class:`ProducerFlushError` of the next ``flush()``/``close()``/exit (unless
    ``await send()`` already raised the error for every item in it: each
    failure is reported once, and a cancelled ``send()`` raised nothing); the
    batches behind it continue in the next epoch. A 403 raises
    :class:`StaleEpochError` for this and every later batch unless
    ``auto_claim=True``, which moves to the server's epoch + 1 before the first
    acknowledgement (see Identity below). A closed (or
    deleted) stream fails this and every later batch with
    :class:`StreamClosedError` (or :class:`NotFoundError`/:class:`GoneError`).

    Lifecycle: leaving ``async with`` flushes and stops without closing the
    stream, also when the block raised. Cancelling it stops at once: items not
    yet acknowledged are dropped (waiting ``send()``/``flush()`` calls raise
    :class:`ProducerClosedError`).

    Items follow :meth:`StreamHandle.append` (on JSON streams ``str``/``bytes``
    are serialised JSON, sent as given; other values are serialised at append).
    If the server rejects a JSON batch (400), its items that do not parse fail
    alone with :class:`InvalidItemError` and the rest are stored.

    Identity: one producer id means one live writer, and a new process must
    start in a higher epoch than any earlier one with that id. The default
    ``epoch="auto"`` takes it from the wall clock in milliseconds, so restarts
    need no stored state; pass an ``int`` to manage epochs yourself. A 204 to
    a batch never sent before (another writer holds that tuple; it was not
    stored) fails with :class:`ProducerIdentityError`, unless ``auto_claim=True``
    and nothing was acknowledged yet: then the producer moves to a fresh epoch
    and resends (at most 3 times). A producer that had written and is then
    fenced (403) with ``auto_claim=True`` also stops with that error: a newer
    writer took over. ``identity="replay"`` is for a process that deliberately
    re-sends, under a stored epoch, the same batches an earlier run of its id
    sent (replaying its own log): a 204 then means "already stored" and is
    reported as a duplicate.

    Example::

        async with StreamHandle(url) as handle:
            async with IdempotentProducer(handle, "orders-service", auto_claim=True) as producer:
                for event in events:
                    producer.append(event)
                await producer.flush()
                ack = await producer.send({"type": "checkpoint"})
                print(ack.offset)
    """

    def __init__(
        self,
        handle: StreamHandle,
        producer_id: str,
        *,
        epoch: int | Literal["auto"] = "auto",
        auto_claim: bool = False,
        identity: ProducerIdentity = "exclusive",
        linger_ms: float = 5,
        max_batch_bytes: int = MIB,
        max_batch_items: int | None = None,
        max_in_flight: int = 5,
        max_buffered_bytes: int = 64 * MIB,
        retry: RetryPolicy | None = None,
        on_error: ProducerOnError | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> None:
        if not isinstance(handle, StreamHandle):
            raise InvalidArgumentError("handle must be a StreamHandle", field="handle")
        if identity not in ("exclusive", "replay"):
            raise InvalidArgumentError("identity must be 'exclusive' or 'replay'", field="identity")
        check_producer_options(
            producer_id=producer_id,
            epoch=epoch,
            linger_ms=linger_ms,
            max_batch_bytes=max_batch_bytes,
            max_batch_items=max_batch_items,
            max_in_flight=max_in_flight,
            max_buffered_bytes=max_buffered_bytes,
            retry=retry,
            on_error=on_error,
            headers=headers,
            params=params,
        )

        self._handle = handle
        self._state = _State.NEW
        # append_from_thread(): items accepted on other threads wait here (under
        # _intake) until the loop drains them into the accumulator, in order.
        # Re-entrant: a signal handler on a thread inside the lock may append too.
        self._intake = threading.RLock()
        self._intake_open = False  # True while RUNNING; closed (under _intake) when leaving it
        self._staged: list[bytes] = []
        self._staged_bytes = 0  # with separators, as the buffer counts them
        self._reserved = 0  # bytes send()/send_many() are about to queue on the loop
        self._drain_scheduled = False
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._forks = 0  # _threads.forks() where it started (a forked child has no loop)
        self._task_group: TaskGroup | None = None
        self._exit_on_stop = False  # explicit start(): close()/detach() leave the task group
        self._close_result: CloseResult | None = None
        self._accumulator = Accumulator(
            max_batch_bytes=max_batch_bytes,
            max_batch_items=max_batch_items if max_batch_items is not None else sys.maxsize,
            max_buffered_bytes=max_buffered_bytes,
            notify=self._notify,
        )
        auto_epoch = epoch == "auto"
        self._sender = Sender(
            handle.transport,
            self._accumulator,
            producer_id,
            epoch=next_auto_epoch() if epoch == "auto" else epoch,
            auto_epoch=auto_epoch,
            auto_claim=bool(auto_claim),
            identity=identity,
            linger=linger_ms / 1000,
            max_in_flight=max_in_flight,
            retry=retry if retry is not None else handle.retry,
            on_error=on_error,
            headers=headers,
            params=params,
        )

    def _notify(self) -> None:
        self._sender.notify()

    # -- read-only state ---------------------------------------------------------------------

    @property
    def producer_id(self) -> str:
        """The ``Producer-Id`` sent with every request."""
        return self._sender.producer_id

    @property
    def epoch(self) -> int:
        """The current ``Producer-Epoch``."""
        return self._sender.epoch

    @property
    def next_seq(self) -> int:
        """The ``Producer-Seq`` the next batch will be sent with."""
        return self._sender.next_seq

    @property
    def pending(self) -> int:
        """Items appended and not yet acknowledged or failed."""
        return self._accumulator.pending + len(self._staged)

    @property
    def buffered_bytes(self) -> int:
        """Request-body bytes of the pending items (at most ``max_buffered_bytes``)."""
        return self._accumulator.buffered_bytes + self._staged_bytes

    @property
    def in_flight(self) -> int:
        """Batches sent (or being retried) and not yet settled."""
        return self._sender.in_flight

    @property
    def stats(self) -> ProducerStats:
        """Counters: acknowledged messages and batches, duplicates, failures, retries, gaps."""
        return self._sender.stats()

    def __repr__(self) -> str:
        return (
            f"IdempotentProducer({redact_url(self._handle.url)!r}, {self.producer_id!r}, "
            f"epoch={self.epoch}, next_seq={self.next_seq}, state={self._state.value!r})"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> IdempotentProducer:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task_group is None:
            return
        if exc is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
            await self._abort()
            return
        try:
            if self._state is _State.RUNNING:  # not closed or detached inside the block
                await self._finish()
        except ProducerFlushError:
            if exc is None:
                raise
            # The block's own exception wins; the failures already went to on_error.
            logger.warning("producer %r: batches failed while exiting", self.producer_id)
        finally:
            await self._leave_task_group()

    async def start(self) -> None:
        """Start the producer's tasks (``async with`` does this).

        Learns the stream's content type (one ``HEAD`` unless the handle knows
        it). A producer started this way must be stopped with :meth:`close`,
        :meth:`detach` or :meth:`aclose` from the same task, outside any cancel
        scope entered after ``start()``; prefer ``async with``.

        Example::

            producer = IdempotentProducer(handle, "worker-1")
            await producer.start()
            try:
                producer.append(b"x")
            finally:
                await producer.detach()
        """
        await self._start()
        self._exit_on_stop = True

    async def _start(self) -> None:
        if self._state is not _State.NEW:
            raise ProducerError("the producer was already started")
        content_type = await self._handle.write_content_type("producer start")
        self._accumulator.begin(json_mode=p.is_json(content_type))
        self._sender.begin(content_type)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._token = anyio.lowlevel.current_token()
        self._forks = forks()
        self._set_state(_State.RUNNING)
        task_group.start_soon(self._sender.run, task_group)
        if _telemetry.OTEL is not None:  # counted in the in-flight and buffered gauges
            _telemetry.OTEL.watch_producer(self)

    async def detach(self) -> None:
        """Flush, then stop without closing the stream.

        Raises :class:`ProducerFlushError` if batches failed (the producer is
        stopped either way). Detaching again does nothing.

        Example::

            await producer.detach()
        """
        if self._state is not _State.STOPPED:
            await self._finish()

    async def aclose(self) -> None:
        """Same as :meth:`detach`."""
        await self.detach()

    async def close(self, *, final: Any = _MISSING) -> CloseResult:
        """Flush, then close the stream with the producer's headers (a fresh seq).

        ``final=`` sends one last item in the closing request. Calling it again
        returns the first result. If earlier batches failed, raises
        :class:`ProducerFlushError` without closing the stream; a stream already
        closed by someone else raises :class:`StreamClosedError`.

        Example::

            result = await producer.close(final={"type": "done"})
            print(result.final_offset)
        """
        if self._close_result is not None:
            return self._close_result
        self._require_running(fatal=False)
        json_mode = self._accumulator.json_mode
        encoded = None if final is _MISSING else encode_item(final, json_mode=json_mode)
        result = await self._finish(close=True, final=encoded)
        assert result is not None
        return result

    async def restart(self) -> None:
        """Flush, then continue in epoch + 1 from seq 0, as a restarted process would.

        Example::

            await producer.restart()
            assert producer.next_seq == 0
        """
        self._require_running()
        await self.flush()
        await self._sender.restart_epoch()
        self._raise_failures()

    async def _finish(
        self, *, close: bool = False, final: bytes | None = None
    ) -> CloseResult | None:
        """Flush, optionally close the stream (with a final item), then let the sender stop."""
        self._require_running(fatal=False)
        self._set_state(_State.STOPPING)
        try:
            await self._flush()
            if close:
                final_offset = await self._sender.close_stream(final)
                self._close_result = CloseResult(final_offset=final_offset)
        finally:
            self._stop_sender()
            if self._exit_on_stop:  # started by start(): nobody else leaves the task group
                await self._leave_task_group()
        return self._close_result

    def _stop_sender(self) -> None:
        self._set_state(_State.STOPPED)
        self._sender.stop()

    def _set_state(self, state: _State) -> None:
        with self._intake:
            # Leaving RUNNING: what other threads' append_from_thread() accepted is
            # queued now (the flush that follows sends it), later ones are refused.
            self._intake_open = state is _State.RUNNING
            self._drain_locked()
        self._state = state
        self._accumulator.set_accepting(state is _State.RUNNING)

    async def _abort(self) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        try:
            await self._leave_task_group()
        finally:
            unsent = self._accumulator.pending
            self._sender.abandon(
                ProducerClosedError(
                    f"the producer was cancelled with {unsent} item(s) not acknowledged"
                )
            )

    async def _leave_task_group(self) -> None:
        if _telemetry.OTEL is not None:
            _telemetry.OTEL.forget_producer(self)
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            self._stop_sender()
            await task_group.__aexit__(None, None, None)

    # -- appending ---------------------------------------------------------------------------

    def append(self, item: Any) -> None:
        """Queue one item; never waits.

        Encoding errors are raised here, and :class:`ProducerBufferFullError`
        when ``max_buffered_bytes`` are pending (``send()`` waits instead).

        Example::

            producer.append({"type": "click", "x": 3})
            producer.append(b'{"type":"pre-serialised"}')
        """
        # The hot path of the producer. While the item fits the running producer's open
        # batch without cutting it or filling the buffer (the accumulator keeps fast_limit
        # current), adding it is all there is to do (the accumulator documents items,
        # open_bytes, separator and fast_limit for this); everything else takes add().
        acc = self._accumulator
        if type(item) is not bytes:
            if acc.fatal is not None or self._state is not _State.RUNNING:
                self._require_running()
            item = encode_item(item, json_mode=acc.json_mode)
        open_bytes = acc.open_bytes + len(item) + acc.separator
        if open_bytes <= acc.fast_limit and item:
            acc.open_bytes = open_bytes
            acc.items.append(item)
        else:
            if acc.fatal is not None or self._state is not _State.RUNNING:
                self._require_running()
            acc.add(item)

    def append_from_thread(self, item: Any) -> None:
        """:meth:`append` for threads other than the producer's event loop; never waits.

        The item is checked and encoded on the calling thread, raising what
        :meth:`append` raises (:class:`ProducerBufferFullError` included, counting
        items not yet handed over), then handed to the loop, which queues the
        items of all threads in the order their calls returned, in one callback
        per burst. Anything the loop does after such a call returned (a
        :meth:`flush`, :meth:`close`) includes the item. An item accepted just
        before the producer turned fatal fails like the rest of its buffer
        (reported by :meth:`flush`); nothing accepted is dropped. A signal handler
        may call it on a thread that is inside it. :meth:`append` on the loop
        does not wait for items still in hand-over: it may queue its item before
        them, and pass ``max_buffered_bytes`` by at most their size. A forked
        child cannot use its parent's producer (:class:`ProducerClosedError`).

        Example::

            def worker(rows):                 # in a thread pool
                for row in rows:
                    producer.append_from_thread(row)

            await anyio.to_thread.run_sync(worker, rows)
            await producer.flush()
        """
        acc = self._accumulator
        if type(item) is not bytes:
            self._require_running()  # the encoding depends on the stream, known once started
            item = encode_item(item, json_mode=acc.json_mode)
        data: bytes = item
        if not data:
            raise EmptyAppendError("cannot append empty data")
        cost = len(data) + acc.separator
        with self._intake:
            if not self._intake_open or acc.fatal is not None:
                self._require_running()
                raise _closed_error()  # leaving RUNNING right now
            if self._forks != forks():
                raise ProducerClosedError(
                    "the producer was started in the parent process: a forked child must "
                    "start its own"
                )
            # Each staged item may open a batch of its own, whose body costs the
            # batch overhead once more (JSON's brackets): count it, to stay in bounds.
            staged = self._staged_bytes + (len(self._staged) + 1) * acc.separator
            if not acc.has_room(staged + self._reserved + cost):
                raise acc.buffer_full()
            if not self._drain_scheduled:
                assert self._token is not None
                try:
                    run_soon(self._token, self._drain)
                except LoopGoneError:
                    raise ProducerClosedError(
                        "the producer's event loop is no longer running"
                    ) from None
                self._drain_scheduled = True
            self._staged.append(data)
            self._staged_bytes += cost

    def _drain(self) -> None:
        """On the loop: queue the items other threads handed over."""
        with self._intake:
            self._drain_locked()

    def _drain_locked(self) -> None:
        self._drain_scheduled = False
        if self._staged:
            staged, self._staged, self._staged_bytes = self._staged, [], 0
            # Their room was checked when accepted: admitted without a second check.
            self._accumulator.admit(staged)

    def append_many(self, items: Iterable[Any]) -> None:
        """Queue items that must be stored together: one batch, one request; never waits.

        The group is never split across batches, so the server stores all of it or
        none (a State Protocol transaction, an event and its outbox record). On a
        JSON stream pre-serialised items (``str``/``bytes``) are parsed here, so a bad
        one fails the call instead of its group at the server. A group larger than
        ``max_batch_bytes`` or ``max_batch_items`` is an
        :class:`~durable_streams.InvalidArgumentError`.

        Example::

            tx = Transaction()
            tx.insert(users, {"id": "u1", "name": "Ada"})
            tx.update(rooms, {"id": "r1", "members": 2})
            producer.append_many(tx.messages)
        """
        self._require_running()
        group = self._encode_group(items)
        with self._intake:  # exact room: no other thread's item can slip in between
            self._drain_locked()
            self._accumulator.add_group(group)

    async def send_many(self, items: Iterable[Any]) -> ProducerAck:
        """:meth:`append_many`, waiting for buffer room, then for the group's acknowledgement.

        Returns the acknowledgement of the group's batch (``offset`` after its last item).

        Example::

            ack = await producer.send_many(tx.messages)
        """
        self._require_running()
        acc = self._accumulator
        group = self._encode_group(items)
        async with self._reserving(sum(len(item) + acc.separator for item in group)) as cost:
            await self.wait_for_capacity(cost)
            self._require_running()
            acc.add_group(group)
        return await self._acknowledgement()

    def _encode_group(self, items: Iterable[Any]) -> list[bytes]:
        json_mode = self._accumulator.json_mode
        group = []
        for index, item in enumerate(items_of(items)):
            data = encode_item(item, json_mode=json_mode)
            if json_mode and isinstance(item, (str, bytes, bytearray, memoryview)):
                reason = json_error(data)
                if reason is not None:
                    raise InvalidArgumentError(
                        f"item {index} of the group is not valid JSON ({reason}); nothing "
                        "of the group was queued",
                        field="items",
                    )
            group.append(data)
        return group

    async def send(self, item: Any) -> ProducerAck:
        """Queue one item, waiting for buffer room, and return once it is acknowledged.

        Raises the batch's error if it failed. Cancelling the wait does not
        withdraw the item.

        Example::

            ack = await producer.send({"type": "order", "id": 7})
            print(ack.offset, ack.duplicate, ack.seq)
        """
        self._require_running()
        acc = self._accumulator
        data = item if type(item) is bytes else encode_item(item, json_mode=acc.json_mode)
        if not data:
            raise EmptyAppendError("cannot append empty data")
        async with self._reserving(len(data) + acc.separator) as cost:
            await self.wait_for_capacity(cost)
            self.append(data)
        return await self._acknowledgement()

    @contextlib.asynccontextmanager
    async def _reserving(self, cost: int) -> AsyncIterator[int]:
        """Queue what other threads handed over, then keep ``cost`` bytes (and a batch
        overhead) out of their reach until the block queued its item(s)."""
        reserved = cost + self._accumulator.separator
        with self._intake:
            self._drain_locked()
            self._reserved += reserved
        try:
            yield cost
        finally:
            with self._intake:
                self._reserved -= reserved

    async def _acknowledgement(self) -> ProducerAck:
        """Wait for the batch holding the item appended last; its ack, or its error."""
        done = anyio.Event()
        waiter = Waiter(done.set)
        self._accumulator.attach_waiter(waiter)
        await done.wait()
        if waiter.error is not None:
            waiter.raised = True  # reported here: flush() need not list it again
            raise waiter.error
        assert waiter.ack is not None
        return waiter.ack

    async def wait_for_capacity(self, nbytes: int = 1) -> None:
        """Wait until ``nbytes`` more can be appended without passing ``max_buffered_bytes``.

        Example::

            await producer.wait_for_capacity(len(item))
            producer.append(item)
        """
        self._drain()
        acc = self._accumulator
        if nbytes > acc.max_buffered_bytes:
            raise ProducerBufferFullError(
                f"an item of {nbytes} bytes can never fit in max_buffered_bytes="
                f"{acc.max_buffered_bytes}"
            )
        await self._sender.wait_for(
            lambda: acc.has_room(nbytes) or self._state is not _State.RUNNING
        )

    # -- flushing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every item appended so far is acknowledged or failed.

        Raises :class:`ProducerFlushError` listing the batches that failed since
        the last flush (their items are not sent again), leaving out those whose
        every item was awaited with :meth:`send`, which raised the error itself.

        Example::

            producer.append(b"x")
            await producer.flush()
        """
        if self._state is _State.NEW:
            self._require_running()
        await self._flush()

    async def _flush(self) -> None:
        self._drain()
        acc = self._accumulator
        mark = acc.mark()
        await self._sender.wait_for(lambda: acc.settled_up_to(mark))
        self._raise_failures()

    def _raise_failures(self) -> None:
        recorded = self._accumulator.take_failures()
        if not recorded:
            return
        # Each failure is reported once: leave out batches whose every item (one
        # waiter each) had its error raised by send(). A cancelled send() raised
        # nothing, so its item is still listed.
        failures = [
            failure
            for failure, waiters in recorded
            if sum(waiter.raised for waiter in waiters) < failure.item_count
        ]
        if not failures:
            return
        first = failures[0].error
        items = sum(f.item_count for f in failures)
        raise ProducerFlushError(
            f"{len(failures)} producer batch(es) failed ({items} items); first error: {first}",
            failures=failures,
        ) from first

    def _require_running(self, *, fatal: bool = True) -> None:
        if self._state is _State.RUNNING:
            if fatal and self._accumulator.fatal is not None:
                raise self._accumulator.fatal
            return
        if self._state is _State.NEW:
            raise ProducerError(
                "the producer is not started: use `async with producer:` or "
                "`await producer.start()`"
            )
        raise _closed_error()


def _closed_error() -> ProducerClosedError:
    return ProducerClosedError("the producer was closed or detached and takes no more items")
