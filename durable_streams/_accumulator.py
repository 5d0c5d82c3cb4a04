"""The producer's accumulator: items become batches, with no I/O and no event loop.

An :class:`Accumulator` keeps the open batch (a list of encoded items and a
running size, so adding an item is cheap), cuts it into a :class:`ProducerBatch`
when it reaches ``max_batch_bytes`` or ``max_batch_items`` (or when asked),
queues the cut batches in append order, accounts their bytes against
``max_buffered_bytes``, and records the ``send()`` callers (:class:`Waiter`)
waiting for each batch. The sender (:mod:`._sender`) takes batches from the
queue and reports their outcomes back with :meth:`Accumulator.complete` and
:meth:`Accumulator.fail`.

Nothing here awaits or creates anyio objects: state changes are announced
through the ``notify`` callback given at construction, and a waiter is woken
through its own ``wake`` callback, so the whole class is testable without an
event loop.

The hot path: ``IdempotentProducer.append()`` inlines the common case of
:meth:`Accumulator.add` through three documented public attributes,
``items``, ``open_bytes`` and ``fast_limit`` (plus ``separator``): while
``open_bytes + len(item) + separator <= fast_limit``, appending ``item`` to
``items`` and adding that cost to ``open_bytes`` is all ``add()`` would do.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable

import anyio
import httpx

from ._codec import join_items
from ._errors import (
    BatchFailure,
    DurableStreamError,
    EmptyAppendError,
    InvalidArgumentError,
    ProducerBufferFullError,
)
from ._models import ProducerAck

__all__ = ["Accumulator", "ProducerBatch", "Waiter"]


class Waiter:
    """One ``send()`` caller waiting for the batch that carries its item.

    ``wake`` is called once, when the outcome (``ack`` or ``error``) is set.

    Example::

        done = anyio.Event()
        waiter = Waiter(done.set)
        accumulator.attach_waiter(waiter)
        await done.wait()
    """

    __slots__ = ("ack", "error", "index", "raised", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.index = -1  # its item's position in append order (set by attach_waiter)
        self.ack: ProducerAck | None = None
        self.error: DurableStreamError | None = None
        self.raised = False  # send() raised ``error`` to its caller (not cancelled first)

    def resolve(self, ack: ProducerAck) -> None:
        """The item is acknowledged."""
        self.ack = ack
        self.wake()

    def reject(self, error: DurableStreamError) -> None:
        """The item failed (or will never be acknowledged)."""
        self.error = error
        self.wake()


class ProducerBatch:
    """One request's worth of items, with the tuple it is currently sent under.

    The accumulator fills ``id``, ``items``, ``first_index``, ``counted_bytes``,
    ``waiters`` and ``close``; the sender owns the rest (the tuple, the wire
    order events, the outcome). The batch keeps its items, not its body: the
    body is joined for each attempt (:attr:`body`, the same bytes every time),
    so an item the server cannot parse can be taken out and the rest resent.
    """

    __slots__ = (
        "after",
        "close",
        "counted_bytes",
        "epoch",
        "error",
        "first_index",
        "gap_renumbers",
        "id",
        "items",
        "json_mode",
        "maybe_stored",
        "response",
        "seq",
        "waiters",
        "written",
    )

    def __init__(
        self,
        id: int,
        items: list[bytes],
        first_index: int,
        waiters: list[Waiter],
        *,
        json_mode: bool,
    ) -> None:
        self.id = id  # append order; never changes when the batch is renumbered
        self.items = items
        self.first_index = first_index  # append-order position of its first item
        self.json_mode = json_mode
        self.counted_bytes = 0  # its share of max_buffered_bytes
        self.waiters = waiters
        self.close = False
        self.epoch = -1
        self.seq = -1
        self.maybe_stored = False  # an attempt under the current tuple failed ambiguously
        self.gap_renumbers = 0  # times a sequence gap sent it to a new epoch (bounded)
        self.response: httpx.Response | None = None
        self.error: DurableStreamError | None = None
        # Set by the sender (anyio events): once this dispatch's first attempt wrote its
        # body or ended; the next batch's first attempt waits for it (``after``).
        self.written: anyio.Event | None = None
        self.after: anyio.Event | None = None

    @property
    def item_count(self) -> int:
        return len(self.items)

    @property
    def body(self) -> bytes:
        """The request body: a JSON array of the items, or the items concatenated.

        A close request without a final item has an empty body.
        """
        if not self.items:
            return b""
        return join_items(self.items, json_mode=self.json_mode)


#: A failed batch not yet listed by ``flush()``, with the ``send()`` waiters of its items.
Failure = tuple[BatchFailure, list[Waiter]]


class Accumulator:
    """The open batch, the queue of cut batches, buffer accounting and ``send()`` waiters.

    Public attributes for ``IdempotentProducer.append()``'s inlined fast path
    (nothing else writes them from outside):

    - ``items``: the encoded items of the open batch;
    - ``open_bytes``: the length the open batch's body would have (always);
    - ``separator``: the bytes each item adds besides its own (1 on JSON streams);
    - ``fast_limit``: the open-batch size up to which an item may be added by
      appending it to ``items`` and adding its cost to ``open_bytes`` (-1: never;
      use :meth:`add`).

    Example::

        acc = Accumulator(max_batch_bytes=100, max_batch_items=sys.maxsize,
                          max_buffered_bytes=1000, notify=lambda: None)
        acc.begin(json_mode=True)
        acc.set_accepting(True)
        acc.add(b'{"a":1}')
        acc.cut()
        batch = acc.next_batch()
        assert batch is not None and batch.body == b'[{"a":1}]'
    """

    def __init__(
        self,
        *,
        max_batch_bytes: int,
        max_batch_items: int,
        max_buffered_bytes: int,
        notify: Callable[[], None],
    ) -> None:
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_items = max_batch_items
        self.max_buffered_bytes = max_buffered_bytes
        self._notify = notify
        self.json_mode = False

        self.separator = 0
        self._overhead = 0
        self.items: list[bytes] = []
        self.open_bytes = self._overhead
        self.fast_limit = -1  # see _refresh_fast_limit()
        self._open_waiters: list[Waiter] = []
        self._queue: deque[ProducerBatch] = deque()  # cut and waiting to be sent, in order
        self._unsettled: dict[int, ProducerBatch] = {}  # by id; ids only grow: first is oldest
        self._next_batch_id = 0
        self._cut_items = 0  # items moved from the open batch into batches so far
        self._queued_bytes = 0  # bodies of cut, unsettled batches (max_buffered_bytes)
        self._accepting = False  # the producer is running and takes items
        self._fatal: DurableStreamError | None = None  # nothing more will be sent
        self._failures: list[Failure] = []

    def begin(self, *, json_mode: bool) -> None:
        """Get ready to take items for a JSON stream (or a byte stream)."""
        self.json_mode = json_mode
        # JSON bodies are "[" + items joined by "," + "]": one byte per item, plus one.
        self.separator = 1 if json_mode else 0
        self._overhead = self.separator
        self.open_bytes = self._overhead

    # -- state the fast path depends on --------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether the producer is running (and so takes items)."""
        return self._accepting

    def set_accepting(self, accepting: bool) -> None:
        self._accepting = accepting
        self._refresh_fast_limit()

    @property
    def fatal(self) -> DurableStreamError | None:
        """Set once the producer is fenced, its stream closed or gone, or it was cancelled."""
        return self._fatal

    def set_fatal(self, error: DurableStreamError) -> None:
        """Refuse every later item with ``error`` (the first fatal error stays)."""
        self._fatal = error
        self._refresh_fast_limit()

    def _refresh_fast_limit(self) -> None:
        """Recompute the open-batch size up to which ``append()`` only adds the item.

        Below it a running producer's non-empty open batch takes the item without
        being cut, filling the buffer or starting the linger timer; -1 sends every
        append through all the checks. Called whenever one of its inputs changes.
        """
        if (
            self.items
            and self._accepting
            and self._fatal is None
            and self.max_batch_items == sys.maxsize  # no item-count limit
        ):
            room = self.max_buffered_bytes - self._queued_bytes
            self.fast_limit = min(self.max_batch_bytes - 1, room)
        else:
            self.fast_limit = -1

    # -- the open batch --------------------------------------------------------------------

    def add(self, item: bytes) -> None:
        """Add one encoded item with every check: empty item, buffer room, cutting, linger."""
        if not item:
            raise EmptyAppendError("cannot append empty data")
        cost = len(item) + self.separator
        if self._queued_bytes + self.open_bytes + cost > self.max_buffered_bytes:
            raise self.buffer_full()
        self._put(item, cost)

    def admit(self, items: list[bytes]) -> None:
        """Add non-empty encoded items whose buffer room the caller already made sure of.

        For items accepted on other threads before they reach the loop
        (``IdempotentProducer.append_from_thread``): they are never refused here,
        so nothing accepted is dropped.
        """
        separator = self.separator
        for item in items:
            self._put(item, len(item) + separator)

    def buffer_full(self, needed: int | None = None) -> ProducerBufferFullError:
        """The error for an item (or group, of ``needed`` bytes) the buffer has no room for."""
        if needed is None:
            return ProducerBufferFullError(
                f"producer buffer is full ({self.buffered_bytes} of "
                f"{self.max_buffered_bytes} bytes pending): await send() or "
                "wait_for_capacity() to wait for room"
            )
        return ProducerBufferFullError(
            f"producer buffer is full ({self.buffered_bytes} of "
            f"{self.max_buffered_bytes} bytes pending, the group needs {needed}): await "
            "send_many() or wait_for_capacity() to wait for room"
        )

    def _put(self, item: bytes, cost: int) -> None:
        open_bytes = self.open_bytes
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
                self._notify()  # the sender starts the linger timer
            self._refresh_fast_limit()

    def add_group(self, items: list[bytes]) -> None:
        """Add encoded items that must travel in one batch (all stored, or none).

        The open batch is cut first if the group would not fit in it; a group no
        batch can hold (more than ``max_batch_bytes`` or ``max_batch_items``) is an
        :class:`InvalidArgumentError`, and one the buffer has no room for a
        :class:`ProducerBufferFullError`: nothing is added then.
        """
        if not items:
            raise EmptyAppendError("cannot append an empty group")
        if not all(items):
            raise EmptyAppendError("cannot append empty data (an item of the group is empty)")
        cost = sum(len(item) for item in items) + self.separator * len(items)
        if self._overhead + cost > self.max_batch_bytes or len(items) > self.max_batch_items:
            raise InvalidArgumentError(
                f"a group of {len(items)} items ({cost} bytes) cannot travel in one batch "
                f"(max_batch_bytes={self.max_batch_bytes}, max_batch_items="
                f"{self.max_batch_items}): raise the limits or split the group",
                field="items",
            )
        if self._queued_bytes + self.open_bytes + cost > self.max_buffered_bytes:
            raise self.buffer_full(cost)
        if self.items and (
            self.open_bytes + cost > self.max_batch_bytes
            or len(self.items) + len(items) > self.max_batch_items
        ):
            self.cut()
        was_empty = not self.items
        self.items.extend(items)
        self.open_bytes += cost
        if self.open_bytes >= self.max_batch_bytes or len(self.items) >= self.max_batch_items:
            self.cut()
        else:
            if was_empty:
                self._notify()  # the sender starts the linger timer
            self._refresh_fast_limit()

    def cut(self) -> None:
        """Turn the open batch (if it holds items) into a queued one."""
        items = self.items
        if not items:
            return
        batch = self._new_batch(items)
        batch.counted_bytes = self.open_bytes  # the length of its body
        batch.waiters = self._open_waiters
        self._queued_bytes += batch.counted_bytes
        self.items = []
        self.open_bytes = self._overhead
        self._open_waiters = []
        self._refresh_fast_limit()
        self._queue.append(batch)
        self._notify()

    def attach_waiter(self, waiter: Waiter) -> None:
        """Attach ``waiter`` to the batch holding the last item appended.

        That is the open batch or, if adding the item cut it, the last queued one.
        """
        if self.items:
            waiter.index = self._cut_items + len(self.items) - 1
            self._open_waiters.append(waiter)
        else:
            batch = self._queue[-1]
            waiter.index = batch.first_index + batch.item_count - 1
            batch.waiters.append(waiter)

    def enqueue_close(self, final: bytes | None) -> ProducerBatch:
        """Queue the request that closes the stream, with ``final`` as its last item if given."""
        batch = self._new_batch([final] if final is not None else [])
        batch.close = True
        self._queue.append(batch)
        self._notify()
        return batch

    def _new_batch(self, items: list[bytes]) -> ProducerBatch:
        batch = ProducerBatch(
            self._next_batch_id, items, self._cut_items, [], json_mode=self.json_mode
        )
        self._next_batch_id += 1
        self._cut_items += len(items)
        self._unsettled[batch.id] = batch
        return batch

    # -- buffer accounting -----------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Body bytes of everything appended and not yet settled."""
        return self._queued_bytes + (self.open_bytes if self.items else 0)

    def has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit in ``max_buffered_bytes`` now."""
        return self._queued_bytes + self.open_bytes + nbytes <= self.max_buffered_bytes

    @property
    def pending(self) -> int:
        """Items appended and not yet settled."""
        queued = sum(b.item_count for b in self._unsettled.values() if not b.close)
        return queued + len(self.items)

    # -- the queue, for the sender ---------------------------------------------------------

    @property
    def has_queued(self) -> bool:
        """Whether a cut batch waits to be sent."""
        return bool(self._queue)

    def next_batch(self) -> ProducerBatch | None:
        """Take the oldest queued batch, or None."""
        return self._queue.popleft() if self._queue else None

    def requeue_first(self, batches: Iterable[ProducerBatch]) -> None:
        """Put batches back at the front of the queue, in append order, to be sent again."""
        self._queue.extendleft(sorted(batches, key=lambda b: b.id, reverse=True))
        self._notify()

    # -- settling --------------------------------------------------------------------------

    def mark(self) -> int:
        """Cut the open batch; return a mark that :meth:`settled_up_to` compares against."""
        self.cut()
        return self._next_batch_id

    def settled_up_to(self, mark: int) -> bool:
        """Whether every batch created before :meth:`mark` returned ``mark`` has settled."""
        return not self._unsettled or next(iter(self._unsettled)) >= mark

    def is_settled(self, batch: ProducerBatch) -> bool:
        return batch.id not in self._unsettled

    def complete(
        self, batch: ProducerBatch, response: httpx.Response, ack: ProducerAck | None
    ) -> None:
        """``batch`` is acknowledged with ``response``: wake its waiters and free its bytes.

        ``ack`` is what its waiters get (None only for a batch without waiters).
        """
        batch.response = response
        for waiter in batch.waiters:
            assert ack is not None
            waiter.resolve(ack)
        self._settle(batch)

    def fail(self, batch: ProducerBatch, error: DurableStreamError) -> BatchFailure:
        """``batch`` failed for good: record it for ``flush()``, wake its waiters, free it."""
        failure = BatchFailure(
            epoch=batch.epoch,
            seq=batch.seq,
            item_count=batch.item_count,
            byte_count=batch.counted_bytes if not batch.close else len(batch.body),
            error=error,
            first_index=batch.first_index,
        )
        batch.error = error
        if not batch.close:  # a failed close is raised by close() itself
            self._failures.append((failure, batch.waiters))
        for waiter in batch.waiters:
            waiter.reject(error)
        self._settle(batch)
        return failure

    def fail_items(
        self, batch: ProducerBatch, failed: dict[int, DurableStreamError]
    ) -> list[BatchFailure]:
        """Take the items at these positions of ``batch`` out of it, each failed alone.

        ``failed`` maps a position in ``batch.items`` to the item's error. Each
        item becomes its own :class:`BatchFailure` (its waiters get the error);
        the batch keeps the other items, in order, and settles if none is left.
        """
        failures = []
        keep: list[bytes] = []
        for position, item in enumerate(batch.items):
            error = failed.get(position)
            if error is None:
                keep.append(item)
                continue
            index = batch.first_index + position
            size = len(item) + self.separator
            failure = BatchFailure(
                epoch=batch.epoch,
                seq=batch.seq,
                item_count=1,
                byte_count=size + self._overhead,
                error=error,
                first_index=index,
            )
            waiters = [w for w in batch.waiters if w.index == index]
            batch.waiters = [w for w in batch.waiters if w.index != index]
            self._failures.append((failure, waiters))
            for waiter in waiters:
                waiter.reject(error)
            batch.counted_bytes -= size
            self._queued_bytes -= size
            failures.append(failure)
        if keep:
            batch.first_index += next(p for p in range(len(batch.items)) if p not in failed)
            batch.items = keep
            self._refresh_fast_limit()
            self._notify()
        else:
            batch.error = failures[-1].error
            batch.items = keep
            self._settle(batch)
        return failures

    def _settle(self, batch: ProducerBatch) -> None:
        del self._unsettled[batch.id]
        self._queued_bytes -= batch.counted_bytes
        self._refresh_fast_limit()
        self._notify()

    def take_failures(self) -> list[Failure]:
        """The failures recorded since the last call, oldest first."""
        failures, self._failures = self._failures, []
        return failures

    def abandon(self, error: DurableStreamError) -> None:
        """The producer was cancelled: fail every wait on a batch that will never settle."""
        if self._fatal is None:
            self.set_fatal(error)
        waiters = [w for batch in self._unsettled.values() for w in batch.waiters]
        for waiter in waiters + self._open_waiters:
            waiter.reject(error)
        self._notify()
