"""``IdempotentProducer``: fire-and-forget appends, batched, pipelined and exactly-once.

The public face of the producer: options, lifecycle (one anyio task group per
producer), ``append``/``send``/``flush``/``close``. Batching, sequence numbers
and epoch changes live in :mod:`._batcher`, retries in :mod:`._delivery`, and
the option checks in :mod:`._options`.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from . import _protocol as p
from ._batch import Waiter
from ._batcher import Batcher
from ._codec import encode_item, join_items
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
from ._types import HeadersArg, ParamsArg, ProducerOnError

__all__ = ["IdempotentProducer"]

logger = logging.getLogger("durable_streams")

MIB = 1024 * 1024
_MISSING: Any = object()

# Producer states.
_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"


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
    ``auto_claim=True``, which moves to the server's epoch + 1. A closed (or
    deleted) stream fails this and every later batch with
    :class:`StreamClosedError` (or :class:`NotFoundError`/:class:`GoneError`).

    Lifecycle: leaving ``async with`` flushes and stops without closing the
    stream, also when the block raised. Cancelling it stops at once: items not
    yet acknowledged are dropped (waiting ``send()``/``flush()`` calls raise
    :class:`ProducerClosedError`).

    Items follow :meth:`StreamHandle.append` (on JSON streams ``str``/``bytes``
    are serialised JSON, sent as given; other values are serialised at append).
    Give each new process a higher ``epoch`` (or ``auto_claim=True``): the
    server drops batches whose ``(epoch, seq)`` it has already seen.

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
        epoch: int = 0,
        auto_claim: bool = False,
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
        self._state = _NEW
        self._task_group: TaskGroup | None = None
        self._exit_on_stop = False  # explicit start(): close()/detach() leave the task group
        self._close_result: CloseResult | None = None
        self._batcher = Batcher(
            handle._transport,
            producer_id,
            epoch=epoch,
            auto_claim=bool(auto_claim),
            linger=linger_ms / 1000,
            max_batch_bytes=max_batch_bytes,
            max_batch_items=max_batch_items if max_batch_items is not None else sys.maxsize,
            max_in_flight=max_in_flight,
            max_buffered_bytes=max_buffered_bytes,
            retry=retry if retry is not None else handle.retry,
            on_error=on_error,
            headers=headers,
            params=params,
        )

    # -- read-only state ---------------------------------------------------------------------

    @property
    def producer_id(self) -> str:
        """The ``Producer-Id`` sent with every request."""
        return self._batcher.producer_id

    @property
    def epoch(self) -> int:
        """The current ``Producer-Epoch``."""
        return self._batcher.epoch

    @property
    def next_seq(self) -> int:
        """The ``Producer-Seq`` the next batch will be sent with."""
        return self._batcher.next_seq

    @property
    def pending(self) -> int:
        """Items appended and not yet acknowledged or failed."""
        return self._batcher.pending

    @property
    def buffered_bytes(self) -> int:
        """Request-body bytes of the pending items (at most ``max_buffered_bytes``)."""
        return self._batcher.buffered_bytes

    @property
    def in_flight(self) -> int:
        """Batches sent (or being retried) and not yet settled."""
        return len(self._batcher.in_flight)

    @property
    def stats(self) -> ProducerStats:
        """Counters: acknowledged messages and batches, duplicates, failures, retries, gaps."""
        return self._batcher.stats()

    def __repr__(self) -> str:
        return (
            f"IdempotentProducer({redact_url(self._handle.url)!r}, {self.producer_id!r}, "
            f"epoch={self.epoch}, next_seq={self.next_seq}, state={self._state!r})"
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
            if self._state == _RUNNING:  # not closed or detached inside the block
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
        if self._state != _NEW:
            raise ProducerError("the producer was already started")
        self._batcher.begin(await self._handle._write_content_type())
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._set_state(_RUNNING)
        task_group.start_soon(self._batcher.run, task_group)

    async def detach(self) -> None:
        """Flush, then stop without closing the stream.

        Raises :class:`ProducerFlushError` if batches failed (the producer is
        stopped either way). Detaching again does nothing.

        Example::

            await producer.detach()
        """
        if self._state != _STOPPED:
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
        json_mode = self._batcher.json_mode
        body = b""
        if final is not _MISSING:
            body = join_items([encode_item(final, json_mode=json_mode)], json_mode=json_mode)
        result = await self._finish(close_body=body)
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
        batcher = self._batcher
        old_epoch = batcher.epoch
        batcher.epoch_change = True
        batcher.notify()
        await batcher.wait_for(lambda: batcher.epoch != old_epoch or batcher.fatal is not None)
        self._raise_failures()

    async def _finish(self, close_body: bytes | None = None) -> CloseResult | None:
        """Flush, optionally close the stream, then let the sender stop."""
        self._require_running(fatal=False)
        self._set_state(_STOPPING)
        batcher = self._batcher
        try:
            await self._flush()
            if close_body is not None:
                batch = batcher.new_batch(close_body, 1 if close_body else 0)
                batch.close = True
                batcher.queue.append(batch)
                batcher.notify()
                await batcher.wait_for(lambda: batch.id not in batcher.unsettled)
                if batch.error is not None:
                    raise batch.error
                assert batch.response is not None
                self._close_result = CloseResult(
                    final_offset=batch.response.headers.get(p.STREAM_NEXT_OFFSET)
                )
        finally:
            self._stop_sender()
            if self._exit_on_stop:  # started by start(): nobody else leaves the task group
                await self._leave_task_group()
        return self._close_result

    def _stop_sender(self) -> None:
        self._set_state(_STOPPED)
        self._batcher.stopped = True
        self._batcher.notify()

    def _set_state(self, state: str) -> None:
        self._state = state
        self._batcher.accepting = state == _RUNNING
        self._batcher.refresh_fast_limit()

    async def _abort(self) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        try:
            await self._leave_task_group()
        finally:
            unsent = self._batcher.pending
            self._batcher.abandon(
                ProducerClosedError(
                    f"the producer was cancelled with {unsent} item(s) not acknowledged"
                )
            )

    async def _leave_task_group(self) -> None:
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
        # batch without cutting it or filling the buffer (the batcher keeps fast_limit
        # current), adding it is all there is to do; everything else takes batcher.add().
        batcher = self._batcher
        if type(item) is not bytes:
            if batcher.fatal is not None or self._state != _RUNNING:
                self._require_running()
            item = encode_item(item, json_mode=batcher.json_mode)
        open_bytes = batcher.open_bytes + len(item) + batcher.separator
        if open_bytes <= batcher.fast_limit and item:
            batcher.open_bytes = open_bytes
            batcher.items.append(item)
        else:
            if batcher.fatal is not None or self._state != _RUNNING:
                self._require_running()
            batcher.add(item)

    async def send(self, item: Any) -> ProducerAck:
        """Queue one item, waiting for buffer room, and return once it is acknowledged.

        Raises the batch's error if it failed. Cancelling the wait does not
        withdraw the item.

        Example::

            ack = await producer.send({"type": "order", "id": 7})
            print(ack.offset, ack.duplicate, ack.seq)
        """
        self._require_running()
        batcher = self._batcher
        data = item if type(item) is bytes else encode_item(item, json_mode=batcher.json_mode)
        if not data:
            raise EmptyAppendError("cannot append empty data")
        await self.wait_for_capacity(len(data) + batcher.separator)
        self.append(data)
        # The item is the last of the open batch or, if append cut it, of the last queued one.
        waiter = Waiter()
        (batcher.open_waiters if batcher.items else batcher.queue[-1].waiters).append(waiter)
        await waiter.done.wait()
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
        batcher = self._batcher
        if nbytes > batcher.max_buffered_bytes:
            raise ProducerBufferFullError(
                f"an item of {nbytes} bytes can never fit in max_buffered_bytes="
                f"{batcher.max_buffered_bytes}"
            )
        await batcher.wait_for(
            lambda: (
                batcher.queued_bytes + batcher.open_bytes + nbytes <= batcher.max_buffered_bytes
                or self._state != _RUNNING
            )
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
        if self._state == _NEW:
            self._require_running()
        await self._flush()

    async def _flush(self) -> None:
        await self._batcher.settle_all()
        self._raise_failures()

    def _raise_failures(self) -> None:
        batcher = self._batcher
        if not batcher.failures:
            return
        # Each failure is reported once: leave out batches whose every item (one
        # waiter each) had its error raised by send(). A cancelled send() raised
        # nothing, so its item is still listed.
        failures = [
            failure
            for failure, waiters in batcher.failures
            if sum(waiter.raised for waiter in waiters) < failure.item_count
        ]
        batcher.failures = []
        if not failures:
            return
        first = failures[0].error
        items = sum(f.item_count for f in failures)
        raise ProducerFlushError(
            f"{len(failures)} producer batch(es) failed ({items} items); first error: {first}",
            failures=failures,
        ) from first

    def _require_running(self, *, fatal: bool = True) -> None:
        if self._state == _RUNNING:
            if fatal and self._batcher.fatal is not None:
                raise self._batcher.fatal
            return
        if self._state == _NEW:
            raise ProducerError(
                "the producer is not started: use `async with producer:` or "
                "`await producer.start()`"
            )
        raise ProducerClosedError("the producer was closed or detached and takes no more items")
