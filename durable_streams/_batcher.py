"""The delivery engine behind :class:`~durable_streams.IdempotentProducer`.

A :class:`Batcher` keeps the open batch (a list of encoded items and a running
size, so adding an item is cheap), the queue of cut batches, and the producer's
``(epoch, seq)`` state. Its sender task cuts batches (size, item count or
linger) and starts one worker per batch, at most ``max_in_flight`` at once
(:mod:`._delivery`: resends, sequence gaps, fencing).

Pipelined batches must reach the server in seq order, or it answers 409
(sequence gap) and the whole body is sent again. Bodies go on the wire in seq
order (see :mod:`._batch`), and the pipeline depth adapts: a busy server that
finds several complete bodies waiting on different connections picks them in
no particular order (the reference server does). So at most 2 batches are sent
ahead at first; every ``GROW_AFTER`` gap-free batches allow one more, up to
``max_in_flight``, and each gap halves it again (not below 2).

Epoch changes share one path (auto-claim after a 403, recovery after a batch
failed for good or the server forgot the producer, ``restart()``): nothing new
is sent, the in-flight batches finish, then every batch not yet acknowledged
is renumbered from seq 0 in the new epoch, in its original order. The new
epoch fences delayed requests of the old one (403), so no batch is ever stored
under two tuples, except in one window: with auto-claim, a batch whose earlier
attempt was lost in transit and that is then fenced may already be stored in
the old epoch; it is sent again (at-least-once) and a warning is logged.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections import deque
from collections.abc import Callable

import anyio
import httpx
from anyio.abc import TaskGroup

from . import _protocol as p
from ._batch import Batch, Waiter
from ._codec import join_items
from ._delivery import deliver
from ._errors import (
    BatchFailure,
    DurableStreamError,
    EmptyAppendError,
    ProducerBufferFullError,
    ProducerError,
)
from ._models import ProducerAck, ProducerStats
from ._retry import RetryPolicy
from ._transport import Transport
from ._types import HeadersArg, ParamsArg, ProducerOnError

__all__ = ["Batcher"]

logger = logging.getLogger("durable_streams")

#: Gap-free batches after which the pipeline may grow by one again.
GROW_AFTER = 16


class Batcher:
    """Batches, sequence numbers, in-flight requests and their outcomes for one producer."""

    def __init__(
        self,
        transport: Transport,
        producer_id: str,
        *,
        epoch: int,
        auto_claim: bool,
        linger: float,
        max_batch_bytes: int,
        max_batch_items: int,
        max_in_flight: int,
        max_buffered_bytes: int,
        retry: RetryPolicy,
        on_error: ProducerOnError | None,
        headers: HeadersArg,
        params: ParamsArg,
    ) -> None:
        self.transport = transport
        self.producer_id = producer_id
        self.content_type = p.DEFAULT_CONTENT_TYPE
        self.json_mode = False
        self.auto_claim = auto_claim
        self.linger = linger
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_items = max_batch_items
        self.max_in_flight = max_in_flight
        self.max_buffered_bytes = max_buffered_bytes
        self.retry = retry
        self.on_error = on_error
        self.headers = headers
        self.params = params

        self.separator = 0
        self.overhead = 0
        self.items: list[bytes] = []
        self.open_bytes = self.overhead
        self.open_waiters: list[Waiter] = []
        self.queue: deque[Batch] = deque()  # cut and waiting to be sent, in order
        self.unsettled: dict[int, Batch] = {}  # by id; ids only grow, so the first is oldest
        self.next_batch_id = 0
        self.queued_bytes = 0  # bodies of cut, unsettled batches (max_buffered_bytes)
        self.changed: anyio.Event  # created in begin(): events need a running event loop
        self.stopped = False  # the sender may exit once everything is settled
        self.abandoned: DurableStreamError | None = None  # cancelled: nothing will settle

        self.epoch = epoch
        self.next_seq = 0
        self.epoch_confirmed = False  # seq 0 of this epoch is acknowledged
        self.in_flight: set[int] = set()  # seqs of the current epoch being delivered
        self.last_written: anyio.Event | None = None  # ``written`` of the last dispatched batch
        # Batches sent ahead now: starts low, grows while no gaps, halves on one.
        self.window = min(2, max_in_flight)
        self.clean_acks = 0  # batches acknowledged without a gap since the window last moved
        self.requeued: list[Batch] = []
        self.epoch_change = False  # renumber into epoch + 1 once nothing is in flight
        self.claim_epoch: int | None = None  # ... or into this epoch (auto-claim)
        self._fatal: DurableStreamError | None = None  # fenced or closed: nothing more is sent
        self.accepting = False  # the producer is running and takes items
        self.fast_limit = -1  # see refresh_fast_limit()
        # Failed batches not yet listed by flush(), with the send() waiters of their items.
        self.failures: list[tuple[BatchFailure, list[Waiter]]] = []

        self.acked_messages = 0
        self.acked_batches = 0
        self.duplicate_batches = 0
        self.failed_batches = 0
        self.retries = 0
        self.sequence_gaps = 0
        self.epoch_changes = 0

    @property
    def fatal(self) -> DurableStreamError | None:
        """Set once the producer is fenced, its stream closed or gone, or it was cancelled."""
        return self._fatal

    @fatal.setter
    def fatal(self, error: DurableStreamError | None) -> None:
        self._fatal = error
        self.refresh_fast_limit()

    def stats(self) -> ProducerStats:
        return ProducerStats(
            acked_messages=self.acked_messages,
            acked_batches=self.acked_batches,
            duplicate_batches=self.duplicate_batches,
            failed_batches=self.failed_batches,
            retries=self.retries,
            sequence_gaps=self.sequence_gaps,
            epoch_changes=self.epoch_changes,
        )

    def begin(self, content_type: str) -> None:
        """Get ready to take items for a stream of this content type."""
        self.content_type = content_type
        self.json_mode = p.is_json(content_type)
        # JSON bodies are "[" + items joined by "," + "]": one byte per item, plus one.
        self.separator = 1 if self.json_mode else 0
        self.overhead = self.separator
        self.open_bytes = self.overhead
        self.changed = anyio.Event()

    # -- the open batch ----------------------------------------------------------------------

    # The open batch is ``items`` and ``open_bytes``, which always equals the length of its
    # body. IdempotentProducer.append inlines the common case of add() for speed.

    def add(self, item: bytes) -> None:
        """Add one encoded item with every check: empty item, buffer room, cutting, linger."""
        if not item:
            raise EmptyAppendError("cannot append empty data")
        cost = len(item) + self.separator
        open_bytes = self.open_bytes
        if self.queued_bytes + open_bytes + cost > self.max_buffered_bytes:
            raise ProducerBufferFullError(
                f"producer buffer is full ({self.buffered_bytes} of "
                f"{self.max_buffered_bytes} bytes pending): await send() or "
                "wait_for_capacity() to wait for room"
            )
        items = self.items
        if open_bytes + cost > self.max_batch_bytes and items:
            self.cut()  # the item would overflow the open batch: it starts the next one
            items = self.items
            open_bytes = self.open_bytes
        items.append(item)
        self.open_bytes = open_bytes = open_bytes + cost
        count = len(items)
        if open_bytes >= self.max_batch_bytes or count >= self.max_batch_items:
            self.cut()
        else:
            if count == 1:
                self.notify()  # the sender starts the linger timer
            self.refresh_fast_limit()

    def refresh_fast_limit(self) -> None:
        """Recompute the open-batch size up to which ``append()`` only adds the item.

        Below it a running producer's non-empty open batch takes the item without
        being cut, filling the buffer or starting the linger timer; -1 sends every
        append through all the checks. Called whenever one of its inputs changes.
        """
        if (
            self.items
            and self.accepting
            and self._fatal is None
            and self.max_batch_items == sys.maxsize  # no item-count limit
        ):
            room = self.max_buffered_bytes - self.queued_bytes
            self.fast_limit = min(self.max_batch_bytes - 1, room)
        else:
            self.fast_limit = -1

    @property
    def buffered_bytes(self) -> int:
        """Body bytes of everything appended and not yet settled."""
        return self.queued_bytes + (self.open_bytes if self.items else 0)

    @property
    def pending(self) -> int:
        """Items appended and not yet settled."""
        queued = sum(b.item_count for b in self.unsettled.values() if not b.close)
        return queued + len(self.items)

    def cut(self) -> None:
        """Turn the open batch into a queued one."""
        items = self.items
        batch = self.new_batch(join_items(items, json_mode=self.json_mode), len(items))
        batch.counted_bytes = len(batch.body)
        batch.waiters = self.open_waiters
        self.queued_bytes += batch.counted_bytes
        self.items = []
        self.open_bytes = self.overhead
        self.open_waiters = []
        self.refresh_fast_limit()
        self.queue.append(batch)
        self.notify()

    def new_batch(self, body: bytes, item_count: int) -> Batch:
        batch = Batch(self.next_batch_id, body, item_count, [])
        self.next_batch_id += 1
        self.unsettled[batch.id] = batch
        return batch

    async def settle_all(self) -> None:
        """Wait until every batch added so far (the open one included) is settled."""
        if self.items:
            self.cut()
        target = self.next_batch_id
        await self.wait_for(lambda: not self.unsettled or next(iter(self.unsettled)) >= target)

    # -- the sender --------------------------------------------------------------------------

    async def run(self, task_group: TaskGroup) -> None:
        """The sender loop: cut, number and dispatch batches until stopped."""
        while True:
            if self.fatal is not None and (self.queue or self.items):
                if self.items:
                    self.cut()
                while self.queue:
                    await self.fail(self.queue.popleft(), self.fatal)
                continue
            if self.epoch_change or self.claim_epoch is not None:
                if not self.in_flight:
                    self.renumber()
                    continue
            elif self.queue:
                # Seq 0 of an epoch goes alone: the server rejects seq > 0 in an epoch it
                # has not seen yet (400), so pipelining starts once the epoch is established.
                if len(self.in_flight) < self.window and (
                    self.next_seq == 0 or self.epoch_confirmed
                ):
                    self.dispatch(self.queue.popleft(), task_group)
                    continue
            elif self.items:
                await self.linger_then_cut()
                continue
            elif self.stopped and not self.in_flight:
                return
            await self.changed.wait()

    async def linger_then_cut(self) -> None:
        if self.linger > 0:
            with anyio.move_on_after(self.linger):
                while not self.queue and self.items and self.fatal is None:
                    await self.changed.wait()
        if self.items and not self.queue:
            self.cut()

    def dispatch(self, batch: Batch, task_group: TaskGroup) -> None:
        batch.epoch = self.epoch
        batch.seq = self.next_seq
        batch.maybe_stored = False
        self.next_seq += 1
        self.in_flight.add(batch.seq)
        batch.after = self.last_written
        batch.written = self.last_written = anyio.Event()
        task_group.start_soon(deliver, self, batch)

    def renumber(self) -> None:
        """Move to the next epoch and queue the unacknowledged batches again from seq 0."""
        new_epoch = self.epoch + 1
        if self.claim_epoch is not None:
            new_epoch = max(new_epoch, self.claim_epoch)
        self.epoch_change = False
        self.claim_epoch = None
        if new_epoch > p.MAX_SAFE_INTEGER:
            self.fatal = ProducerError("the producer epoch would exceed 2**53 - 1")
        else:
            logger.info(
                "producer %r: epoch %d -> %d, %d batch(es) to send again",
                self.producer_id,
                self.epoch,
                new_epoch,
                len(self.requeued),
            )
            self.epoch = new_epoch
            self.epoch_changes += 1
            self.next_seq = 0
            self.epoch_confirmed = False
        self.last_written = None  # nothing is in flight: the new epoch's seq 0 goes at once
        self.queue.extendleft(sorted(self.requeued, key=lambda b: b.id, reverse=True))
        self.requeued = []
        self.notify()

    # -- outcomes of one batch ---------------------------------------------------------------

    def narrow(self) -> None:
        """A batch overtook an earlier one: send fewer ahead."""
        self.window = max(min(2, self.max_in_flight), self.window // 2)
        self.clean_acks = 0

    def requeue(self, batch: Batch, claim: int | None = None) -> None:
        self.requeued.append(batch)
        if claim is not None:
            self.claim_epoch = max(claim, self.claim_epoch or 0)
        else:
            self.epoch_change = True

    def ack(self, batch: Batch, response: httpx.Response, *, gap_seen: bool = False) -> None:
        duplicate = response.status_code == 204
        if not gap_seen and self.window < self.max_in_flight:
            self.clean_acks += 1
            if self.clean_acks >= GROW_AFTER:
                self.window += 1
                self.clean_acks = 0
        self.acked_batches += 1
        self.acked_messages += batch.item_count
        if duplicate:
            self.duplicate_batches += 1
        if batch.seq == 0 and batch.epoch == self.epoch:
            self.epoch_confirmed = True
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
        self.settle(batch)

    async def fail(self, batch: Batch, error: DurableStreamError) -> None:
        failure = BatchFailure(
            epoch=batch.epoch,
            seq=batch.seq,
            item_count=batch.item_count,
            byte_count=len(batch.body),
            error=error,
        )
        self.failed_batches += 1
        batch.error = error
        if not batch.close:  # a failed close is raised by close() itself
            self.failures.append((failure, batch.waiters))
        for waiter in batch.waiters:
            waiter.error = error
            waiter.done.set()
        self.settle(batch)
        if self.on_error is not None:
            try:
                outcome = self.on_error(error, failure)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                logger.exception("producer %r: on_error raised", self.producer_id)

    def settle(self, batch: Batch) -> None:
        del self.unsettled[batch.id]
        self.queued_bytes -= batch.counted_bytes
        self.refresh_fast_limit()
        self.notify()

    # -- waking ------------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake every task waiting for a state change (each re-checks its condition)."""
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            if self.abandoned is not None:
                raise self.abandoned
            await self.changed.wait()

    def abandon(self, error: DurableStreamError) -> None:
        """The producer was cancelled: fail every wait on a batch that will never settle."""
        self.abandoned = error
        self.fatal = self.fatal or error
        waiters = [w for batch in self.unsettled.values() for w in batch.waiters]
        for waiter in waiters + self.open_waiters:
            waiter.error = error
            waiter.done.set()
        self.notify()
