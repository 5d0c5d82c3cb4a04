"""``IdempotentProducer``: fire-and-forget appends, batched, pipelined and exactly-once.

How it works, briefly. ``append()`` only encodes the item and adds it to the
open batch (a list of bytes and a running size), so it costs a few hundred
nanoseconds. One sender task cuts batches (size, item count or ``linger_ms``)
and hands each to a worker task with the next ``(epoch, seq)``; up to
``max_in_flight`` workers run at once. A worker retries its batch with the same
tuple and the same bytes until it is acknowledged (200, or 204 = duplicate) or
fails for good. A ``409`` sequence gap means an earlier batch is still on its
way: the worker waits for the earlier ones and sends again.

Epoch changes (auto-claim after a 403, recovery after a batch failed for good
or the server lost the producer's state, ``restart()``) all go through one
path: no new batch is sent, the in-flight ones finish, then every batch not yet
acknowledged is renumbered from seq 0 in the new epoch, in its original order.
The new epoch fences any delayed request of the old one (the server answers it
403), so a batch can never be stored under two tuples.

What is guaranteed: every item appended is either acknowledged exactly once,
in append order, or reported as failed (``on_error``, ``flush()``/``close()``
raise :class:`ProducerFlushError`). One window is at-least-once: with
``auto_claim``, a batch whose response was lost *and* that is then fenced by
another instance may have been stored in the old epoch; it is sent again in the
new one. Without ``auto_claim`` a fence is final and such a batch is reported
as failed.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict

from . import _protocol as p
from . import _retry
from ._codec import encode_item, join_items
from ._errors import (
    DurableStreamError,
    EmptyAppendError,
    InvalidArgumentError,
    ProducerBufferFullError,
    ProducerClosedError,
    ProducerError,
    ProducerFlushError,
    ProducerSequenceGapError,
    StaleEpochError,
    StreamClosedError,
    error_for_response,
    redact_url,
)
from ._handle import StreamHandle
from ._models import BatchFailure, CloseResult
from ._retry import RetryPolicy, is_retryable
from ._transport import HeadersArg, ParamsArg, _Values

__all__ = ["IdempotentProducer", "ProducerOnError", "ProducerAck"]

logger = logging.getLogger("durable_streams")

ProducerOnError = Callable[[DurableStreamError, BatchFailure], "Awaitable[None] | None"]
"""``on_error(error, failure)``: called once for every batch that failed for good
(sync or async; its own exceptions are logged and ignored)."""

MIB = 1024 * 1024
_MISSING: Any = object()

# Producer states.
_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"


class ProducerAck(BaseModel):
    """Acknowledgement of one item sent with :meth:`IdempotentProducer.send`.

    ``offset`` is the stream's tail after the batch holding the item (None when
    the server answered 204 = duplicate, which carries no offset); ``epoch`` and
    ``seq`` are the producer tuple the batch was stored under.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    offset: str | None = None
    duplicate: bool = False
    epoch: int
    seq: int


class _Waiter:
    """One ``send()`` caller waiting for the batch that carries its item."""

    __slots__ = ("ack", "done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ack: ProducerAck | None = None
        self.error: DurableStreamError | None = None


class _Batch:
    __slots__ = (
        "body",
        "close",
        "epoch",
        "error",
        "id",
        "item_bytes",
        "item_count",
        "maybe_stored",
        "response",
        "seq",
        "waiters",
    )

    def __init__(
        self, id: int, body: bytes, item_count: int, item_bytes: int, waiters: list[_Waiter]
    ) -> None:
        self.id = id
        self.body = body
        self.item_count = item_count
        self.item_bytes = item_bytes
        self.waiters = waiters
        self.close = False
        self.epoch = -1
        self.seq = -1
        # An attempt with the current tuple failed ambiguously (it may be stored).
        self.maybe_stored = False
        self.response: httpx.Response | None = None
        self.error: DurableStreamError | None = None


class IdempotentProducer:
    """Fire-and-forget writer with batching, pipelining and exactly-once retries.

    ``append()`` never blocks: it raises :class:`ProducerBufferFullError` when
    ``max_buffered_bytes`` of items are waiting, while ``await send(...)`` and
    ``await wait_for_capacity()`` wait for room instead. ``flush()`` waits until
    everything appended so far is acknowledged and raises
    :class:`ProducerFlushError` listing the batches that failed since the last
    flush. Leaving ``async with`` flushes and stops (without closing the
    stream); a cancelled producer stops at once.

    Items follow :meth:`StreamHandle.append`: on JSON streams ``str``/``bytes``
    are serialised JSON sent as given and other values are serialised once, at
    ``append`` time; on other streams items are ``bytes`` or ``str``.

    ``epoch`` must go up whenever a new process takes over the producer id
    (``auto_claim=True`` does this on a 403): the server drops batches whose
    ``(epoch, seq)`` it has already seen, so a restarted process reusing an epoch
    would have its first batches discarded as duplicates.

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
        if not isinstance(producer_id, str) or not producer_id:
            raise InvalidArgumentError(
                "producer_id must be a non-empty string", field="producer_id"
            )
        _check_int("epoch", epoch, minimum=0)
        if epoch > p.MAX_SAFE_INTEGER:
            raise InvalidArgumentError("epoch must be at most 2**53 - 1", field="epoch")
        if isinstance(linger_ms, bool) or not isinstance(linger_ms, (int, float)):
            raise InvalidArgumentError("linger_ms must be a number", field="linger_ms")
        if not 0 <= linger_ms < float("inf"):
            raise InvalidArgumentError("linger_ms must be >= 0 and finite", field="linger_ms")
        _check_int("max_batch_bytes", max_batch_bytes, minimum=1)
        if max_batch_items is not None:
            _check_int("max_batch_items", max_batch_items, minimum=1)
        _check_int("max_in_flight", max_in_flight, minimum=1)
        _check_int("max_buffered_bytes", max_buffered_bytes, minimum=1)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError("retry must be a RetryPolicy", field="retry")
        if on_error is not None and not callable(on_error):
            raise InvalidArgumentError("on_error must be callable", field="on_error")
        _Values(headers, lower=True)  # validates the value types now, not at the first send
        _Values(params, lower=False)

        self._handle = handle
        self._transport = handle._transport
        self._producer_id = producer_id
        self._auto_claim = bool(auto_claim)
        self._linger_s = linger_ms / 1000
        self._max_batch_bytes = max_batch_bytes
        self._max_batch_items = max_batch_items if max_batch_items is not None else sys.maxsize
        self._max_in_flight = max_in_flight
        self._max_buffered_bytes = max_buffered_bytes
        self._retry = retry if retry is not None else handle.retry
        self._on_error = on_error
        self._headers = headers
        self._params = params

        self._state = _NEW
        self._task_group: TaskGroup | None = None
        self._exit_on_stop = False  # explicit start(): close()/detach() leave the task group
        self._content_type = p.DEFAULT_CONTENT_TYPE
        self._json_mode = False
        self._overhead = 0  # body bytes beyond the items: "[" "]" minus one "," in JSON mode
        self._separator = 0

        # The open batch.
        self._items: list[bytes] = []
        self._open_bytes = 0
        self._open_waiters: list[_Waiter] = []

        self._queue: deque[_Batch] = deque()  # cut, waiting to be sent, in order
        self._unsettled: dict[int, _Batch] = {}  # id -> batch; ids increase, so first = oldest
        self._next_batch_id = 0
        self._buffered_bytes = 0
        self._pending = 0
        self._changed = anyio.Event()

        self._epoch = epoch
        self._next_seq = 0
        self._epoch_confirmed = False  # seq 0 of this epoch was acknowledged
        self._in_flight_seqs: set[int] = set()
        self._requeued: list[_Batch] = []
        self._epoch_change = False  # renumber into a new epoch once nothing is in flight
        self._claim_epoch: int | None = None
        self._fatal: DurableStreamError | None = None  # fenced or stream closed: nothing more
        self._failures: list[BatchFailure] = []
        self._close_result: CloseResult | None = None

        self._acked_messages = 0
        self._acked_batches = 0
        self._duplicate_batches = 0
        self._failed_batches = 0
        self._retries = 0
        self._sequence_gaps = 0

    # -- read-only state ---------------------------------------------------------------------

    @property
    def producer_id(self) -> str:
        """The ``Producer-Id`` sent with every request."""
        return self._producer_id

    @property
    def epoch(self) -> int:
        """The current ``Producer-Epoch``."""
        return self._epoch

    @property
    def next_seq(self) -> int:
        """The ``Producer-Seq`` the next batch will be sent with."""
        return self._next_seq

    @property
    def pending(self) -> int:
        """Items appended and not yet acknowledged or failed."""
        return self._pending

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the pending items (bounded by ``max_buffered_bytes``)."""
        return self._buffered_bytes

    @property
    def in_flight(self) -> int:
        """Batches sent (or being retried) and not yet settled."""
        return len(self._in_flight_seqs)

    @property
    def acked_messages(self) -> int:
        """Items acknowledged by the server (duplicates included)."""
        return self._acked_messages

    @property
    def acked_batches(self) -> int:
        """Batches acknowledged by the server (duplicates included)."""
        return self._acked_batches

    @property
    def duplicate_batches(self) -> int:
        """Batches the server answered with 204: it already had them (a retried success)."""
        return self._duplicate_batches

    @property
    def failed_batches(self) -> int:
        """Batches that failed for good."""
        return self._failed_batches

    @property
    def retries(self) -> int:
        """Requests sent again after a retryable failure (network error, timeout, 5xx, 429)."""
        return self._retries

    @property
    def sequence_gaps(self) -> int:
        """409 sequence-gap answers absorbed (a later batch overtook an earlier one)."""
        return self._sequence_gaps

    def __repr__(self) -> str:
        return (
            f"IdempotentProducer({redact_url(self._transport.url)!r}, {self._producer_id!r}, "
            f"epoch={self._epoch}, next_seq={self._next_seq}, state={self._state!r})"
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
        if self._state != _RUNNING:  # closed or detached inside the block
            await self._leave_task_group()
            return
        if exc is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
            await self._abort()
            return
        try:
            await self._finish()
        except ProducerFlushError:
            if exc is None:
                raise
            # The body's exception wins; the failures already went to on_error.
            logger.warning("producer %r: batches failed while exiting", self._producer_id)
        finally:
            await self._leave_task_group()

    async def start(self) -> None:
        """Start the producer's tasks (``async with`` does this).

        Learns the stream's content type (one ``HEAD`` unless the handle knows
        it). A producer started this way must be stopped with :meth:`close`,
        :meth:`detach` or :meth:`aclose` from the same task, outside any cancel
        scope entered after ``start()``; prefer ``async with``.
        """
        await self._start()
        self._exit_on_stop = True

    async def _start(self) -> None:
        if self._state != _NEW:
            raise ProducerError("the producer was already started")
        self._content_type = await self._handle._write_content_type()
        self._json_mode = p.is_json(self._content_type)
        self._overhead = 1 if self._json_mode else 0
        self._separator = 1 if self._json_mode else 0
        self._open_bytes = self._overhead
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._state = _RUNNING
        task_group.start_soon(self._run_sender)

    async def detach(self) -> None:
        """Flush, then stop without closing the stream. Raises :class:`ProducerFlushError`
        if batches failed (the producer is stopped either way)."""
        if self._state == _STOPPED:
            return
        try:
            await self._finish()
        finally:
            if self._exit_on_stop:
                await self._leave_task_group()

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
        body = b""
        if final is not _MISSING:
            body = join_items(
                [encode_item(final, json_mode=self._json_mode)], json_mode=self._json_mode
            )
        try:
            result = await self._finish(close_body=body)
        finally:
            if self._exit_on_stop:
                await self._leave_task_group()
        assert result is not None
        return result

    async def restart(self) -> None:
        """Flush, then continue in epoch + 1 from seq 0 (as a restarted process would)."""
        self._require_running()
        await self.flush()
        old_epoch = self._epoch
        self._epoch_change = True
        self._notify()
        await self._wait_for(lambda: self._epoch != old_epoch or self._fatal is not None)
        self._raise_failures()

    async def _finish(self, close_body: bytes | None = None) -> CloseResult | None:
        """Flush, optionally close the stream, then let the sender stop."""
        self._require_running(fatal=False)
        self._state = _STOPPING
        try:
            await self._flush()
            if close_body is not None:
                batch = self._new_batch(close_body, 1 if close_body else 0, [])
                batch.close = True
                self._queue.append(batch)
                self._notify()
                await self._wait_for(lambda: batch.id not in self._unsettled)
                self._close_result = self._close_outcome(batch)
        finally:
            self._state = _STOPPED
            self._notify()
        return self._close_result

    async def _abort(self) -> None:
        self._state = _STOPPED
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        await self._leave_task_group()

    async def _leave_task_group(self) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            self._state = _STOPPED
            self._notify()
            await task_group.__aexit__(None, None, None)

    # -- appending ---------------------------------------------------------------------------

    def append(self, item: Any) -> None:
        """Queue one item; never waits. Raises :class:`ProducerBufferFullError` when
        ``max_buffered_bytes`` are pending, and encoding errors at once.

        Example::

            producer.append({"type": "click", "x": 3})
            producer.append(b'{"type":"pre-serialised"}')
        """
        if self._fatal is not None or self._state != _RUNNING:
            self._require_running()
        data = item if type(item) is bytes else encode_item(item, json_mode=self._json_mode)
        size = len(data)
        if not size:
            raise EmptyAppendError("cannot append empty data")
        if self._buffered_bytes + size > self._max_buffered_bytes:
            raise ProducerBufferFullError(
                f"producer buffer is full ({self._buffered_bytes} of {self._max_buffered_bytes} "
                "bytes pending): await send() or wait_for_capacity() to wait for room"
            )
        self._add(data, size, None)

    async def send(self, item: Any) -> ProducerAck:
        """Queue one item, waiting for buffer room, and return once it is acknowledged.

        Raises the batch's error if it failed. Cancelling the wait does not
        withdraw the item.

        Example::

            ack = await producer.send({"type": "order", "id": 7})
            print(ack.offset, ack.duplicate, ack.seq)
        """
        self._require_running()
        data = item if type(item) is bytes else encode_item(item, json_mode=self._json_mode)
        if not data:
            raise EmptyAppendError("cannot append empty data")
        await self.wait_for_capacity(len(data))
        self._require_running()
        waiter = _Waiter()
        self._add(data, len(data), waiter)
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.ack is not None
        return waiter.ack

    async def wait_for_capacity(self, nbytes: int = 1) -> None:
        """Wait until ``nbytes`` more can be appended without exceeding ``max_buffered_bytes``."""
        if nbytes > self._max_buffered_bytes:
            raise ProducerBufferFullError(
                f"an item of {nbytes} bytes can never fit in max_buffered_bytes="
                f"{self._max_buffered_bytes}"
            )
        await self._wait_for(
            lambda: (
                self._buffered_bytes + nbytes <= self._max_buffered_bytes or self._state != _RUNNING
            )
        )

    def _add(self, data: bytes, size: int, waiter: _Waiter | None) -> None:
        self._buffered_bytes += size
        self._pending += 1
        items = self._items
        cost = size + self._separator
        if items and self._open_bytes + cost > self._max_batch_bytes:
            self._cut()
            items = self._items
        items.append(data)
        self._open_bytes += cost
        if waiter is not None:
            self._open_waiters.append(waiter)
        if self._open_bytes >= self._max_batch_bytes or len(items) >= self._max_batch_items:
            self._cut()
        elif len(items) == 1:
            self._notify()  # the sender starts the linger timer

    def _cut(self) -> None:
        """Turn the open batch into a queued one."""
        items = self._items
        body = join_items(items, json_mode=self._json_mode)
        batch = self._new_batch(body, len(items), self._open_waiters)
        batch.item_bytes = self._open_bytes - self._overhead - len(items) * self._separator
        self._items = []
        self._open_bytes = self._overhead
        self._open_waiters = []
        self._queue.append(batch)
        self._notify()

    def _new_batch(self, body: bytes, item_count: int, waiters: list[_Waiter]) -> _Batch:
        batch = _Batch(self._next_batch_id, body, item_count, 0, waiters)
        self._next_batch_id += 1
        self._unsettled[batch.id] = batch
        return batch

    # -- flushing ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every item appended so far is acknowledged or failed.

        Raises :class:`ProducerFlushError` listing the batches that failed since
        the last flush (their items are not retried again).

        Example::

            producer.append(b"x")
            await producer.flush()
        """
        if self._state == _NEW:
            self._require_running()
        await self._flush()

    async def _flush(self) -> None:
        if self._items:
            self._cut()
        target = self._next_batch_id
        await self._wait_for(lambda: not self._unsettled or next(iter(self._unsettled)) >= target)
        self._raise_failures()

    def _raise_failures(self) -> None:
        if not self._failures:
            return
        failures, self._failures = self._failures, []
        first = failures[0].error
        raise ProducerFlushError(
            f"{len(failures)} producer batch(es) failed ({sum(f.item_count for f in failures)} "
            f"items); first error: {first}",
            failures=failures,
        ) from first

    # -- the sender --------------------------------------------------------------------------

    async def _run_sender(self) -> None:
        while True:
            if self._fatal is not None and (self._queue or self._items):
                if self._items:
                    self._cut()
                while self._queue:
                    await self._fail(self._queue.popleft(), self._fatal)
                continue
            if self._epoch_change or self._claim_epoch is not None:
                if not self._in_flight_seqs:
                    self._renumber()
                    continue
            elif self._queue:
                # Seq 0 of an epoch goes alone: the server rejects seq > 0 of an epoch it
                # has not seen (400), so pipelining starts once the epoch is established.
                if len(self._in_flight_seqs) < self._max_in_flight and (
                    self._next_seq == 0 or self._epoch_confirmed
                ):
                    self._dispatch(self._queue.popleft())
                    continue
            elif self._items:
                await self._linger()
                continue
            elif self._state == _STOPPED and not self._in_flight_seqs:
                return
            await self._changed.wait()

    async def _linger(self) -> None:
        if self._linger_s > 0 and self._state == _RUNNING:
            with anyio.move_on_after(self._linger_s):
                while not self._queue and self._items and self._fatal is None:
                    await self._changed.wait()
        if self._items and not self._queue:
            self._cut()

    def _dispatch(self, batch: _Batch) -> None:
        batch.epoch = self._epoch
        batch.seq = self._next_seq
        batch.maybe_stored = False
        self._next_seq += 1
        self._in_flight_seqs.add(batch.seq)
        assert self._task_group is not None
        self._task_group.start_soon(self._run_batch, batch)

    def _renumber(self) -> None:
        """Move to the next epoch and queue the unacknowledged batches again from seq 0."""
        new_epoch = self._epoch + 1
        if self._claim_epoch is not None:
            new_epoch = max(new_epoch, self._claim_epoch)
        self._epoch_change = False
        self._claim_epoch = None
        if new_epoch > p.MAX_SAFE_INTEGER:
            self._fatal = ProducerError("producer epoch would exceed 2**53 - 1")
        else:
            logger.info(
                "producer %r: epoch %d -> %d, %d batch(es) to resend",
                self._producer_id,
                self._epoch,
                new_epoch,
                len(self._requeued),
            )
            self._epoch = new_epoch
            self._next_seq = 0
            self._epoch_confirmed = False
        self._queue.extendleft(sorted(self._requeued, key=lambda b: b.id, reverse=True))
        self._requeued = []
        self._notify()

    # -- one batch ---------------------------------------------------------------------------

    async def _run_batch(self, batch: _Batch) -> None:
        try:
            await self._deliver(batch)
        finally:
            self._in_flight_seqs.discard(batch.seq)
            self._notify()

    async def _deliver(self, batch: _Batch) -> None:
        backoff: _retry.Backoff | None = None
        gap_seen = False
        while True:
            try:
                response = await self._post(batch)
            except ProducerSequenceGapError as error:
                # Earlier batches are still on their way: wait for them, then send again.
                self._sequence_gaps += 1
                await self._wait_for(lambda: min(self._in_flight_seqs) >= batch.seq)
                if self._epoch_change or self._claim_epoch is not None or gap_seen:
                    # An earlier batch failed or was requeued, or the server lost our
                    # state (still a gap with nothing earlier pending): new epoch.
                    logger.debug(
                        "producer %r: gap at seq %d: %s", self._producer_id, batch.seq, error
                    )
                    self._requeue(batch)
                    return
                gap_seen = True
                continue
            except StaleEpochError as error:
                if self._auto_claim and error.current_epoch is not None:
                    self._requeue(batch, claim=error.current_epoch + 1)
                else:
                    self._fatal = error
                    await self._fail(batch, error)
                return
            except StreamClosedError as error:
                self._fatal = error
                await self._fail(batch, error)
                return
            except DurableStreamError as error:
                delay = None
                if is_retryable(error):
                    backoff = backoff or self._retry.backoff()
                    delay = backoff.next_delay(error)
                if delay is None:
                    # Later batches of this epoch will see a gap and move to a new one.
                    self._epoch_change = True
                    await self._fail(batch, error)
                    return
                batch.maybe_stored = True
                self._retries += 1
                logger.debug(
                    "producer %r: retrying seq %d in %.3fs: %s",
                    self._producer_id,
                    batch.seq,
                    delay,
                    error,
                )
                await _retry._sleep(delay)
                continue
            self._ack(batch, response)
            return

    async def _post(self, batch: _Batch) -> httpx.Response:
        protocol = {
            p.PRODUCER_ID: self._producer_id,
            p.PRODUCER_EPOCH: str(batch.epoch),
            p.PRODUCER_SEQ: str(batch.seq),
        }
        if batch.body:
            protocol[p.CONTENT_TYPE] = self._content_type
        if batch.close:
            protocol[p.STREAM_CLOSED] = p.TRUE
        operation = "producer close" if batch.close else "producer append"
        request = await self._transport.build(
            "POST",
            protocol_headers=protocol,
            headers=self._headers,
            params=self._params,
            content=batch.body,
        )
        response = await self._transport.send(request, operation=operation)
        if response.status_code not in (200, 204):
            raise error_for_response(response, operation=operation, body=response.content)
        return response

    def _requeue(self, batch: _Batch, claim: int | None = None) -> None:
        self._requeued.append(batch)
        if claim is not None:
            self._claim_epoch = max(claim, self._claim_epoch or 0)
        else:
            self._epoch_change = True

    def _ack(self, batch: _Batch, response: httpx.Response) -> None:
        duplicate = response.status_code == 204
        self._acked_batches += 1
        self._acked_messages += batch.item_count
        if duplicate:
            self._duplicate_batches += 1
        if batch.seq == 0 and batch.epoch == self._epoch:
            self._epoch_confirmed = True
        batch.response = response
        if batch.waiters:
            ack = ProducerAck(
                offset=response.headers.get(p.STREAM_NEXT_OFFSET),
                duplicate=duplicate,
                epoch=batch.epoch,
                seq=batch.seq,
            )
            for waiter in batch.waiters:
                waiter.ack = ack
                waiter.done.set()
        self._settle(batch)

    async def _fail(self, batch: _Batch, error: DurableStreamError) -> None:
        failure = BatchFailure(
            epoch=batch.epoch,
            seq=batch.seq,
            item_count=batch.item_count,
            byte_count=len(batch.body),
            error=error,
        )
        self._failed_batches += 1
        batch.error = error
        if not batch.close:  # a failed close is raised by close() itself
            self._failures.append(failure)
        for waiter in batch.waiters:
            waiter.error = error
            waiter.done.set()
        self._settle(batch)
        if self._on_error is not None:
            try:
                outcome = self._on_error(error, failure)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                logger.exception("producer %r: on_error raised", self._producer_id)

    def _settle(self, batch: _Batch) -> None:
        del self._unsettled[batch.id]
        self._buffered_bytes -= batch.item_bytes
        self._pending -= batch.item_count if not batch.close else 0
        self._notify()

    def _close_outcome(self, batch: _Batch) -> CloseResult:
        if batch.error is not None:
            raise batch.error
        assert batch.response is not None
        return CloseResult(final_offset=batch.response.headers.get(p.STREAM_NEXT_OFFSET))

    # -- helpers -----------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every task waiting for a state change (they re-check their condition)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    def _require_running(self, *, fatal: bool = True) -> None:
        if self._state == _RUNNING:
            if fatal and self._fatal is not None:
                raise self._fatal
            return
        if self._state == _NEW:
            raise ProducerError(
                "the producer is not started: use `async with producer:` or "
                "`await producer.start()`"
            )
        raise ProducerClosedError("the producer was closed or detached and takes no more items")


def _check_int(field: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{field} must be an integer", field=field)
    if value < minimum:
        raise InvalidArgumentError(f"{field} must be >= {minimum}, got {value}", field=field)
