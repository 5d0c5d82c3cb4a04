"""The producer's sender: sequence numbers, epochs, the pipeline and per-batch delivery.

A :class:`Sender` runs one task (:meth:`Sender.run`) that takes cut batches
from the :class:`~._accumulator.Accumulator` (cutting the open batch after
``linger``), numbers them with the producer's ``(epoch, seq)`` and starts one
delivery task per batch, at most ``window`` at once.

Delivery: a batch is resent with the same tuple and the same bytes after a
retryable failure (without waiting: its place in the order is lost anyway), and
200 and 204 (duplicate) count as success. A 409 sequence gap means an earlier
batch has not landed yet: the delivery waits until no earlier batch is in
flight (their responses, not just their bodies) and sends again. A 403 fences
the producer, or with auto-claim hands the batch back to be sent again in the
server's epoch + 1. A closed or gone stream fails this batch and every later
one. A failure that is not retryable, or whose retries ran out, fails the
batch, and the batches behind it are renumbered into a new epoch.

Pipelined batches must reach the server in seq order, or it answers 409
(sequence gap) and the whole body is sent again. A batch's first attempt starts
writing its body only once the previous batch's body is fully written to its
connection (or that attempt ended), so bodies go on the wire in seq order while
responses overlap (:func:`when_body_written`). The pipeline depth adapts: a
busy server that finds several complete bodies waiting on different
connections picks them in no particular order (the reference server does). So
at most 2 batches are sent ahead at first; every ``GROW_AFTER`` gap-free
batches allow one more, up to ``max_in_flight``, and each gap halves it again
(not below 2).

Epoch changes share one path (auto-claim after a 403 or an identity conflict,
recovery after a batch failed for good or the server forgot the producer,
``restart()``): nothing new is sent, the in-flight batches finish, then every
batch not yet acknowledged is renumbered from seq 0 in the new epoch, in its
original order. The new epoch fences delayed requests of the old one (403), so
no batch is ever stored under two tuples, except in one window: with
auto-claim, a batch whose earlier attempt was lost in transit and that is then
fenced may already be stored in the old epoch; it is sent again
(at-least-once) and a warning is logged. With ``epoch="auto"`` a new epoch is
also at least the current wall-clock millisecond, so a later process, which
starts from the clock, stays above every epoch an earlier one used.

Identity: a 204 (duplicate) to a batch this producer never sent before under
that tuple means another incarnation owns ``(id, epoch, seq)`` and the batch
was *not* stored; so does a ``Producer-Seq`` echo above the highest seq this
producer sent in the epoch. Before this producer has had a batch acknowledged,
``auto_claim=True`` moves it to a fresh epoch (at most ``MAX_TAKEOVERS`` times,
with a growing pause); afterwards, or without auto-claim, the producer stops
with :class:`ProducerIdentityError` (a 403 without auto-claim stays a
:class:`StaleEpochError`). So two live writers with one id cannot fence each
other forever: the older one fails at its first request after the newer one
wrote, and nothing is dropped silently.

Unparsable items: a 400 to a JSON batch makes the sender check each item with
Python's C JSON parser (only then: appending never parses pre-serialised
items). Items that do not parse fail alone with :class:`InvalidItemError`; the
others are sent again under the same tuple (a 400 proves nothing was stored).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import anyio
import httpx
from anyio.abc import TaskGroup

from . import _protocol as p
from . import _retry, _telemetry
from ._accumulator import Accumulator, ProducerBatch
from ._codec import json_error
from ._errors import (
    BadRequestError,
    BatchFailure,
    DurableStreamError,
    GoneError,
    InvalidItemError,
    NotFoundError,
    ParseError,
    ProducerError,
    ProducerIdentityError,
    ProducerSequenceGapError,
    StaleEpochError,
    StreamClosedError,
    error_for_response,
)
from ._models import ProducerAck, ProducerStats
from ._retry import RetryPolicy, is_retryable
from ._transport import Transport
from ._types import HeadersArg, ParamsArg, ProducerIdentity, ProducerOnError

__all__ = ["GROW_AFTER", "MAX_TAKEOVERS", "Sender", "next_auto_epoch", "when_body_written"]

logger = logging.getLogger("durable_streams")

#: Gap-free batches after which the pipeline may grow by one again.
GROW_AFTER = 16

#: Epochs a producer may claim from other writers before its first acknowledgement.
MAX_TAKEOVERS = 3

#: Pause before the second and later takeovers (doubling, capped at 1 s).
TAKEOVER_PAUSE = 0.05

#: Times one batch may be sent to a new epoch because of sequence gaps before it fails
#: (a server that keeps answering 409 must not make the producer loop forever).
MAX_GAP_RENUMBERS = 3

_last_auto_epoch = 0


def next_auto_epoch() -> int:
    """An epoch from the wall clock (milliseconds since 1970), above any this process gave.

    A process that starts later starts higher, without stored state; if the
    clock went backwards the server's 403 still fences the lower epoch.

    Example::

        epoch = next_auto_epoch()   # e.g. 1767225600123
    """
    global _last_auto_epoch
    _last_auto_epoch = max(time.time_ns() // 1_000_000, _last_auto_epoch + 1)
    return min(_last_auto_epoch, p.MAX_SAFE_INTEGER)


def _outcome(batch: ProducerBatch) -> str:
    """How a delivery ended, for its span: stored, duplicate, failed or requeued."""
    if batch.error is not None:
        return "failed"
    if batch.response is not None:
        return "duplicate" if batch.response.status_code == 204 else "stored"
    return "requeued"  # handed back to be sent in a new epoch (a new span then)


def when_body_written(written: anyio.Event) -> Callable[[str, object], Awaitable[None]]:
    """An httpcore ``trace`` callback that sets ``written`` once the body is on the wire.

    httpx has no hook for "request written"; the trace extension reports it
    (``http11.send_request_body.complete``, or ``.failed``). Other transports
    never call it, and the attempt's end sets the event instead.

    Example::

        request.extensions["trace"] = when_body_written(written)
    """

    async def trace(name: str, info: object) -> None:
        if name.endswith(("send_request_body.complete", "send_request_body.failed")):
            written.set()

    return trace


class Sender:
    """Numbers, sends and settles the accumulator's batches for one producer.

    Example (what ``IdempotentProducer`` does)::

        sender = Sender(transport, accumulator, "svc", epoch=0, auto_claim=False,
                        linger=0.005, max_in_flight=5, retry=RetryPolicy(),
                        on_error=None, headers=None, params=None)
        sender.begin("application/json")
        task_group.start_soon(sender.run, task_group)
        ...
        await sender.wait_for(lambda: accumulator.settled_up_to(mark))
        sender.stop()
    """

    def __init__(
        self,
        transport: Transport,
        accumulator: Accumulator,
        producer_id: str,
        *,
        epoch: int,
        auto_claim: bool,
        linger: float,
        identity: ProducerIdentity = "exclusive",
        max_in_flight: int,
        retry: RetryPolicy,
        on_error: ProducerOnError | None,
        headers: HeadersArg,
        params: ParamsArg,
        auto_epoch: bool = False,
    ) -> None:
        self._transport = transport
        self._acc = accumulator
        self.producer_id = producer_id
        self._content_type = p.DEFAULT_CONTENT_TYPE
        self._auto_claim = auto_claim
        self._identity: ProducerIdentity = identity
        self._linger = linger
        self._max_in_flight = max_in_flight
        self._retry = retry
        self._on_error = on_error
        self._headers = headers
        self._params = params
        self._auto_epoch = auto_epoch

        self._changed: anyio.Event | None = None  # created in begin(): needs an event loop
        self._stopped = False  # the run loop may exit once everything is settled
        self._abandoned: DurableStreamError | None = None  # cancelled: nothing will settle

        self._epoch = epoch
        self._next_seq = 0
        self._epoch_confirmed = False  # seq 0 of this epoch is acknowledged
        self._in_flight: set[int] = set()  # seqs of the current epoch being delivered
        self._last_written: anyio.Event | None = None  # ``written`` of the last dispatch
        # Batches sent ahead now: starts low, grows while no gaps, halves on one.
        self._window = min(2, max_in_flight)
        self._clean_acks = 0  # batches acknowledged without a gap since the window moved
        self._requeued: list[ProducerBatch] = []
        self._epoch_change = False  # renumber into epoch + 1 once nothing is in flight
        self._claim_epoch: int | None = None  # ... or into this epoch (auto-claim)
        self._change_reason = ""  # why, for the log line of the next epoch change
        self._acknowledged = False  # the server has stored a batch of this producer
        self._takeovers = 0  # epochs claimed from other writers

        self._acked_messages = 0
        self._acked_batches = 0
        self._duplicate_batches = 0
        self._failed_batches = 0
        self._retries = 0
        self._sequence_gaps = 0
        self._epoch_changes = 0
        self._stored_messages = 0
        self._duplicate_messages = 0
        self._failed_messages = 0
        self._identity_conflicts = 0

    # -- read-only state -------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The current ``Producer-Epoch``."""
        return self._epoch

    @property
    def next_seq(self) -> int:
        """The ``Producer-Seq`` the next batch will be sent with."""
        return self._next_seq

    @property
    def in_flight(self) -> int:
        """Batches being delivered (sent or being retried) in the current epoch."""
        return len(self._in_flight)

    @property
    def window(self) -> int:
        """How many batches may be in flight now (2 up to ``max_in_flight``)."""
        return self._window

    def stats(self) -> ProducerStats:
        return ProducerStats(
            acked_messages=self._acked_messages,
            acked_batches=self._acked_batches,
            duplicate_batches=self._duplicate_batches,
            failed_batches=self._failed_batches,
            retries=self._retries,
            sequence_gaps=self._sequence_gaps,
            epoch_changes=self._epoch_changes,
            stored_messages=self._stored_messages,
            duplicate_messages=self._duplicate_messages,
            failed_messages=self._failed_messages,
            identity_conflicts=self._identity_conflicts,
        )

    # -- control from the producer ---------------------------------------------------------

    def begin(self, content_type: str) -> None:
        """Get ready to send to a stream of this content type (needs a running event loop)."""
        self._content_type = content_type
        self._changed = anyio.Event()

    def stop(self) -> None:
        """Let :meth:`run` return once every batch is settled."""
        self._stopped = True
        self.notify()

    async def restart_epoch(self) -> None:
        """Move to epoch + 1 once nothing is in flight (or until the producer turns fatal)."""
        old_epoch = self._epoch
        self._epoch_change = True
        self._change_reason = "restart()"
        self.notify()
        await self.wait_for(lambda: self._epoch != old_epoch or self._acc.fatal is not None)

    async def close_stream(self, final: bytes | None) -> str | None:
        """Send the closing request after every queued batch; return the final offset."""
        batch = self._acc.enqueue_close(final)
        await self.wait_for(lambda: self._acc.is_settled(batch))
        if batch.error is not None:
            raise batch.error
        assert batch.response is not None
        final_offset: str | None = batch.response.headers.get(p.STREAM_NEXT_OFFSET)
        return final_offset

    # -- waking ----------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake every task waiting for a state change (each re-checks its condition)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, re-checking after every state change."""
        while not condition():
            if self._abandoned is not None:
                raise self._abandoned
            assert self._changed is not None
            await self._changed.wait()

    def abandon(self, error: DurableStreamError) -> None:
        """The producer was cancelled: fail every wait on a batch that will never settle."""
        self._abandoned = error
        self._acc.abandon(error)

    # -- the run loop ----------------------------------------------------------------------

    async def run(self, task_group: TaskGroup) -> None:
        """The sender loop: cut, number and dispatch batches until stopped."""
        acc = self._acc
        while True:
            fatal = acc.fatal
            if fatal is not None and (acc.has_queued or acc.items):
                acc.cut()
                while (batch := acc.next_batch()) is not None:
                    await self._fail(batch, fatal)
                continue
            if self._epoch_change or self._claim_epoch is not None:
                if not self._in_flight:
                    self._renumber()
                    continue
            elif acc.has_queued:
                # Seq 0 of an epoch goes alone: the server rejects seq > 0 in an epoch it
                # has not seen yet (400), so pipelining starts once the epoch is established.
                if len(self._in_flight) < self._window and (
                    self._next_seq == 0 or self._epoch_confirmed
                ):
                    batch = acc.next_batch()
                    assert batch is not None
                    self._dispatch(batch, task_group)
                    continue
            elif acc.items:
                await self._linger_then_cut()
                continue
            elif self._stopped and not self._in_flight:
                return
            assert self._changed is not None
            await self._changed.wait()

    async def _linger_then_cut(self) -> None:
        acc = self._acc
        if self._linger > 0:
            with anyio.move_on_after(self._linger):
                while not acc.has_queued and acc.items and acc.fatal is None:
                    assert self._changed is not None
                    await self._changed.wait()
        if not acc.has_queued:
            acc.cut()

    def _dispatch(self, batch: ProducerBatch, task_group: TaskGroup) -> None:
        batch.epoch = self._epoch
        batch.seq = self._next_seq
        batch.maybe_stored = False
        self._next_seq += 1
        self._in_flight.add(batch.seq)
        batch.after = self._last_written
        batch.written = self._last_written = anyio.Event()
        task_group.start_soon(self._deliver, batch)

    def _renumber(self) -> None:
        """Move to the next epoch and queue the unacknowledged batches again from seq 0."""
        new_epoch = self._epoch + 1
        if self._claim_epoch is not None:
            new_epoch = max(new_epoch, self._claim_epoch)
        if self._auto_epoch:
            new_epoch = max(new_epoch, next_auto_epoch())
        reason = self._change_reason or "recovery"
        self._epoch_change = False
        self._claim_epoch = None
        self._change_reason = ""
        if new_epoch > p.MAX_SAFE_INTEGER:
            self._acc.set_fatal(ProducerError("the producer epoch would exceed 2**53 - 1"))
        else:
            logger.info(
                "producer %r: epoch %d -> %d (%s), %d batch(es) to send again",
                self.producer_id,
                self._epoch,
                new_epoch,
                reason,
                len(self._requeued),
            )
            self._epoch = new_epoch
            self._epoch_changes += 1
            if _telemetry.OTEL is not None:
                _telemetry.OTEL.epoch_changed()
            self._next_seq = 0
            self._epoch_confirmed = False
        self._last_written = None  # nothing is in flight: the new epoch's seq 0 goes at once
        requeued, self._requeued = self._requeued, []
        self._acc.requeue_first(requeued)

    # -- outcomes of one batch -------------------------------------------------------------

    def _narrow(self) -> None:
        """A batch overtook an earlier one: send fewer ahead."""
        self._window = max(min(2, self._max_in_flight), self._window // 2)
        self._clean_acks = 0

    def _requeue(self, batch: ProducerBatch, reason: str, claim: int | None = None) -> None:
        self._requeued.append(batch)
        if not self._change_reason:
            self._change_reason = reason
        if claim is not None:
            self._claim_epoch = max(claim, self._claim_epoch or 0)
        else:
            self._epoch_change = True

    def _ack(self, batch: ProducerBatch, response: httpx.Response, *, gap_seen: bool) -> None:
        duplicate = response.status_code == 204
        self._acknowledged = True
        if not gap_seen and self._window < self._max_in_flight:
            self._clean_acks += 1
            if self._clean_acks >= GROW_AFTER:
                self._window += 1
                self._clean_acks = 0
        self._acked_batches += 1
        self._acked_messages += batch.item_count
        if _telemetry.OTEL is not None:
            _telemetry.OTEL.acked(batch.item_count, batch.counted_bytes, duplicate)
        if duplicate:
            self._duplicate_batches += 1
            self._duplicate_messages += batch.item_count
        else:
            self._stored_messages += batch.item_count
        if batch.seq == 0 and batch.epoch == self._epoch:
            self._epoch_confirmed = True
        ack = None
        if batch.waiters:  # the ack model is built only for send() callers
            ack = ProducerAck(
                offset=response.headers.get(p.STREAM_NEXT_OFFSET),
                duplicate=duplicate,
                epoch=batch.epoch,
                seq=batch.seq,
            )
        self._acc.complete(batch, response, ack)

    async def _fail(self, batch: ProducerBatch, error: DurableStreamError) -> None:
        self._failed_batches += 1
        self._failed_messages += batch.item_count
        if _telemetry.OTEL is not None:
            _telemetry.OTEL.failed(batch.item_count)
        await self._report(self._acc.fail(batch, error))

    async def _report(self, failure: BatchFailure) -> None:
        """Pass a failure to ``on_error``."""
        error = failure.error
        if self._on_error is not None:
            try:
                outcome = self._on_error(error, failure)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                logger.exception("producer %r: on_error raised", self.producer_id)

    def _impossible_gap(
        self, batch: ProducerBatch, error: ProducerSequenceGapError
    ) -> ParseError | None:
        """A protocol error if a 409 gap cannot be true for ``batch``, else None.

        A gap means the server expects an earlier seq than the one sent: an expected
        seq that is negative, at or above the one sent, or past 2**53-1, or a received
        seq other than the one sent, is a broken (or hostile) server, not a gap.
        """
        expected, received = error.expected_seq, error.received_seq
        problem = None
        if expected is not None and not 0 <= expected < batch.seq:
            problem = f"expected seq {expected} for seq {batch.seq}"
        elif received is not None and received != batch.seq:
            problem = f"received seq {received} for seq {batch.seq}"
        if problem is None:
            return None
        impossible = ParseError(
            f"producer {self.producer_id!r}: the server answered a sequence gap that cannot "
            f"be ({problem} of epoch {batch.epoch}); nothing more is sent",
            status=error.status,
            url=self._transport.url,
        )
        impossible.__cause__ = error
        return impossible

    def _fence(self, error: DurableStreamError) -> None:
        """Nothing more is sent: this error fails every later batch and append."""
        self._acc.set_fatal(error)

    # -- delivering one batch --------------------------------------------------------------

    async def _deliver(self, batch: ProducerBatch) -> None:
        """Send ``batch`` until it is acknowledged, fails, or is handed back for renumbering."""
        otel = _telemetry.OTEL
        traced = None
        if otel is not None:  # the batch's span is the parent of its HTTP attempts
            traced = otel.start_batch(
                self.producer_id,
                batch.epoch,
                batch.seq,
                batch.item_count,
                batch.counted_bytes,
                batch.close,
            )
        delivered = False
        try:
            await self._deliver_attempts(batch)
            delivered = True
        finally:
            if batch.written is not None:  # never leave the next batch waiting
                batch.written.set()
            self._in_flight.discard(batch.seq)
            self.notify()
            if otel is not None and traced is not None:
                outcome = _outcome(batch) if delivered else "cancelled"
                otel.end_batch(*traced, outcome, batch.error)

    async def _deliver_attempts(self, batch: ProducerBatch) -> None:
        backoff: _retry.Backoff | None = None
        gap_seen = False
        attempts = 0
        while True:
            try:
                attempts += 1
                response = await self._post(batch, attempts - 1)
            except ProducerSequenceGapError as error:
                impossible = self._impossible_gap(batch, error)
                if impossible is not None:
                    self._fence(impossible)
                    await self._fail(batch, impossible)
                    return
                self._sequence_gaps += 1
                if not gap_seen:
                    self._narrow()
                await self.wait_for(lambda: min(self._in_flight) >= batch.seq)
                if self._epoch_change or self._claim_epoch is not None or gap_seen:
                    # An earlier batch failed or moved to a new epoch, or the server
                    # forgot this producer (a gap with nothing earlier pending).
                    if batch.gap_renumbers >= MAX_GAP_RENUMBERS:
                        self._epoch_change = True  # later batches cannot land after it
                        self._change_reason = self._change_reason or "a batch failed"
                        await self._fail(batch, error)
                        return
                    await _retry.sleep(min(TAKEOVER_PAUSE * 2**batch.gap_renumbers, 1.0))
                    batch.gap_renumbers += 1
                    self._requeue(batch, "a sequence gap with nothing earlier pending")
                    return
                gap_seen = True
                continue
            except StaleEpochError as error:
                epoch = error.current_epoch
                if epoch is not None and not 0 <= epoch < p.MAX_SAFE_INTEGER:
                    impossible = ParseError(
                        f"producer {self.producer_id!r}: the server fenced epoch {batch.epoch} "
                        f"with an impossible current epoch {epoch} (not in 0..2**53-2)",
                        status=error.status,
                        url=self._transport.url,
                    )
                    impossible.__cause__ = error
                    self._fence(impossible)
                    await self._fail(batch, impossible)
                    return
                if error.current_epoch is not None and self._may_take_over():
                    await self._pause_before_takeover()
                    if batch.maybe_stored:
                        logger.warning(
                            "producer %r: seq %d of epoch %d was fenced after an ambiguous "
                            "failure; it is sent again in the new epoch and may be stored twice",
                            self.producer_id,
                            batch.seq,
                            batch.epoch,
                        )
                    self._takeovers += 1
                    self._requeue(
                        batch,
                        f"claimed: the server's epoch is {error.current_epoch}",
                        claim=error.current_epoch + 1,
                    )
                    return
                if self._auto_claim:
                    await self._conflict(
                        batch,
                        f"was fenced by epoch {error.current_epoch} after it had written "
                        f"(seq {batch.seq} of epoch {batch.epoch})",
                        cause=error,
                    )
                    return
                logger.warning(
                    "producer %r: fenced by epoch %s (this one is %d)",
                    self.producer_id,
                    error.current_epoch,
                    batch.epoch,
                )
                self._fence(error)
                await self._fail(batch, error)
                return
            except (StreamClosedError, NotFoundError, GoneError) as error:
                # The stream is closed or gone: this and every later batch fail at once.
                self._fence(error)
                await self._fail(batch, error)
                return
            except DurableStreamError as error:
                if isinstance(error, BadRequestError) and await self._drop_unparsable(batch, error):
                    continue  # the other items go again under the same tuple
                if batch.item_count == 0 and not batch.close:
                    self._epoch_change = True  # every item failed alone: its seq is a hole
                    self._change_reason = self._change_reason or "a batch failed"
                    return
                delay = None
                if is_retryable(error):
                    backoff = backoff or self._retry.backoff()
                    delay = backoff.next_delay(error)
                    if delay is None:
                        logger.info(
                            "producer %r: giving up on seq %d of epoch %d after %d attempts: %s",
                            self.producer_id,
                            batch.seq,
                            batch.epoch,
                            attempts,
                            error,
                        )
                if delay is None:
                    # Later batches of this epoch cannot land after the hole: renumber them.
                    self._epoch_change = True
                    self._change_reason = self._change_reason or "a batch failed"
                    await self._fail(batch, error)
                    return
                batch.maybe_stored = True
                self._retries += 1
                if _telemetry.OTEL is not None:
                    _telemetry.OTEL.retried()
                logger.debug(
                    "producer %r: retrying seq %d in %.3fs: %s",
                    self.producer_id,
                    batch.seq,
                    delay,
                    error,
                )
                await _retry.sleep(delay)
                continue
            conflict = self._identity_conflict(batch, response)
            if conflict is not None and response.status_code == 204:
                await self._conflict(batch, conflict)  # not stored
                return
            self._ack(batch, response, gap_seen=gap_seen)
            if conflict is not None:  # stored, but the echo shows another writer
                await self._conflict(batch, conflict, stored=True)
            return

    # -- identity: one producer id, one live writer ----------------------------------------

    def _identity_conflict(self, batch: ProducerBatch, response: httpx.Response) -> str | None:
        """Why this success proves another writer uses the id, or None if it does not."""
        if batch.close and not batch.items:
            return None  # a close-only request is answered 204 whether new or not
        echo = p.header_int(response.headers, p.PRODUCER_SEQ)
        if response.status_code == 204 and self._identity == "replay":
            return None  # re-sending what an earlier run stored: a duplicate is expected
        if response.status_code == 204:
            if not batch.maybe_stored:
                return (
                    f"seq {batch.seq} of epoch {batch.epoch} was answered as a duplicate "
                    "although this producer had not sent it before: another writer holds "
                    "that tuple, and this batch was not stored"
                )
            if echo is not None and echo >= self._next_seq:
                return (
                    f"the server holds seq {echo} of epoch {batch.epoch}, beyond the "
                    f"{self._next_seq - 1} this producer sent: another writer uses that "
                    f"epoch, so whether seq {batch.seq} is this producer's is unknown"
                )
        elif echo is not None and echo != batch.seq:
            return f"the server echoed seq {echo} to seq {batch.seq} of epoch {batch.epoch}"
        return None

    def _may_take_over(self) -> bool:
        """Whether to claim a fresh epoch from another writer (else: stop, with an error)."""
        return self._auto_claim and not self._acknowledged and self._takeovers < MAX_TAKEOVERS

    async def _pause_before_takeover(self) -> None:
        if self._takeovers:
            await _retry.sleep(min(TAKEOVER_PAUSE * 2 ** (self._takeovers - 1), 1.0))

    async def _conflict(
        self,
        batch: ProducerBatch,
        what: str,
        cause: DurableStreamError | None = None,
        *,
        stored: bool = False,
    ) -> None:
        """Another writer uses this producer id: take a fresh epoch, or stop with an error.

        ``stored``: the batch itself was stored (and acknowledged); only later ones fail.
        """
        self._identity_conflicts += 1
        if cause is None and not stored and self._may_take_over():
            logger.info(
                "producer %r: identity conflict, claiming a fresh epoch: %s",
                self.producer_id,
                what,
            )
            await self._pause_before_takeover()
            self._takeovers += 1
            self._requeue(batch, "claimed after an identity conflict")
            return
        if self._auto_claim and self._takeovers >= MAX_TAKEOVERS:
            advice = f"it was still contested after {MAX_TAKEOVERS} epoch claims"
        elif self._auto_claim:
            advice = "this producer had already written, so a newer writer took over"
        else:
            advice = "pass auto_claim=True to take a fresh epoch when this happens at startup"
        logger.warning("producer %r: identity conflict: %s", self.producer_id, what)
        error = ProducerIdentityError(
            f"producer {self.producer_id!r} {what}. One producer id must have one live "
            f"writer: give concurrent writers distinct ids, and start each new process "
            f'in a higher epoch (epoch="auto" does); {advice}',
            producer_id=self.producer_id,
            epoch=batch.epoch,
            seq=batch.seq,
        )
        error.__cause__ = cause
        self._fence(error)
        if not stored:
            await self._fail(batch, error)

    # -- unparsable items ------------------------------------------------------------------

    async def _drop_unparsable(self, batch: ProducerBatch, error: BadRequestError) -> bool:
        """Fail the items of a rejected JSON batch that do not parse, each alone.

        Returns True if other items are left to send again under the same tuple.
        """
        if not batch.json_mode or not batch.items:
            return False
        reasons = {n: why for n, item in enumerate(batch.items) if (why := json_error(item))}
        if not reasons:
            return False  # the server refused the batch for another reason
        errors: dict[int, DurableStreamError] = {}
        for position, reason in reasons.items():
            index = batch.first_index + position
            item_error = InvalidItemError(
                f"item {index} is not valid JSON ({reason}); the server rejected its batch "
                "with 400, and the other items were sent without it",
                index=index,
                status=error.status,
                url=error.url,
                headers=error.headers,
                body=error.body,
            )
            item_error.__cause__ = error
            errors[position] = item_error
        logger.warning(
            "producer %r: %d unparsable item(s) in seq %d of epoch %d fail alone",
            self.producer_id,
            len(errors),
            batch.seq,
            batch.epoch,
        )
        for failure in self._acc.fail_items(batch, errors):
            self._failed_batches += 1
            self._failed_messages += 1
            await self._report(failure)
        batch.maybe_stored = False  # a 400 means this tuple stored nothing
        return bool(batch.items)

    async def _post(self, batch: ProducerBatch, resend_count: int) -> httpx.Response:
        """One attempt; a first attempt writes its body after the previous batch's (seq order).

        ``resend_count``: earlier attempts of this batch under this tuple (for tracing).
        """
        protocol = {
            p.PRODUCER_ID: self.producer_id,
            p.PRODUCER_EPOCH: str(batch.epoch),
            p.PRODUCER_SEQ: str(batch.seq),
        }
        if batch.items:
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
        written = batch.written
        if written is not None:
            request.extensions["trace"] = when_body_written(written)
        after, batch.after = batch.after, None
        if after is not None:
            await after.wait()
        try:
            response = await self._transport.send(
                request, operation=operation, resend_count=resend_count
            )
        finally:
            if written is not None:  # the attempt ended: whatever follows may go
                written.set()
        if response.status_code not in (200, 204):
            raise error_for_response(response, operation=operation, body=response.content)
        return response
