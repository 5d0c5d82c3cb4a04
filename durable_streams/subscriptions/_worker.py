"""``WakeWorker``: one process of a pool that serves pull-wake subscriptions (§7).

The worker tails each wake stream of its subscriptions; a wake event (or startup,
or a done ack answered with ``next_wake``) makes it try to claim that subscription.
Losing the race (``ALREADY_CLAIMED``) or finding nothing to do (``NO_PENDING_WORK``)
is normal and quiet. A claimed wake is processed like this:

- each stream with pending work is read from its acked offset by a
  :class:`~durable_streams.Consumer` (catch-up, ``live=False``) whose checkpoint
  store is the wake's progress: the consumer's read loop, commit-after-handle and
  ``on_error`` policy are the worker's, nothing is read twice over;
- a heartbeat task acks the progress (an ack without ``done``) every
  ``lease_ttl / 3``, so the lease holds while the handler runs. Progress is acked at
  response boundaries only: the protocol gives an offset per server response, not
  per item, and a catch-up read of the reference server answers with the whole
  backlog in one response. A killed worker's wake is done again by the next worker
  from the last acked boundary: up to one server response per stream, possibly the
  whole wake (at-least-once; handlers must be idempotent);
- at the end, one ``done`` ack with the offsets reached (inclusive, the
  ``Stream-Next-Offset`` of what the handler finished). A wake that acked nothing
  while the server still has work for it (a stream that cannot be read) is paced
  like a failure, never claimed again at once;
- a stream whose acked offset answers 410 (data no longer retained) is read from
  the oldest data retained; a stream that is gone (404, or 410 from its start:
  deleted, or expired, which the server does not unlink) is acked up to the claim's
  ``tail_offset`` with a warning: its data cannot be read any more, and the
  subscription would otherwise wait on it forever;
- the server refuses a whole ack for one bad stream: when an ack names a stream the
  subscription no longer links (deleted meanwhile), that stream's ack is dropped and
  the ack retried once;
- ``FENCED`` (or an expired/invalid token, or a heartbeat that cannot get through
  before the lease ends): the wake's processing is cancelled at once and nothing
  more is acked or released for it;
- a handler failure that ``on_error`` does not absorb: the progress is acked, the
  wake released (another worker retries from there), and this worker waits before it
  claims that subscription again (bounded exponential pause, so a poison item cannot
  spin the pool);
- shutdown (cancellation, even during the done ack): the progress is acked and the
  wake released, shielded and bounded by ``shutdown_timeout``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import pydantic
from anyio.abc import TaskGroup, TaskStatus

from durable_streams import (
    AckOffsetError,
    AlreadyClaimedError,
    CheckpointKey,
    CommitEvery,
    Consumer,
    DurableStreamError,
    FencedError,
    InvalidArgumentError,
    NoPendingWorkError,
    OnItemError,
    Position,
    PositionRejectedError,
    SubscriptionNotFoundError,
    UsageError,
    WakeTokenError,
)

from ._client import SubscriptionClient
from ._models import AckResult, Claim, ClaimedStream, StreamAck, WakeEvent

__all__ = ["WakeContext", "WakeHandler", "WakeWorker"]

logger = logging.getLogger("durable_streams.subscriptions")

# The heartbeats' clock and sleep, and the pause before claiming a subscription again,
# looked up through these names so tests can move time.
_clock = time.monotonic
_sleep = anyio.sleep
_pause = anyio.sleep

#: The offset before the first item (the protocol's ``-1``).
OFFSET_START = "-1"

#: Longest pause before claiming a subscription again after its handler failed.
MAX_FAILURE_PAUSE = 30.0
FIRST_FAILURE_PAUSE = 0.5


@dataclass(frozen=True, slots=True)
class WakeContext:
    """What a handler is told besides the item: where it comes from and which wake.

    ``stream`` is the root-relative path of the item's stream.
    """

    subscription_id: str
    stream: str
    wake_id: str
    generation: int
    worker: str


WakeHandler = Callable[[Any, WakeContext], "Awaitable[object] | object"]
"""``handler(item, context)``: sync or async; returns when ``item`` is handled."""


class _LostLease(Exception):
    """The wake's lease is gone (fenced, token refused, subscription deleted)."""


class _WakeProgress:
    """A checkpoint store for the consumers of one wake: what the handler completed.

    The consumer saves positions after handled items; the offset of a position is
    what may be acked. A position part-way through a response acks that response's
    start (the protocol has no offset inside a response): its items are read again
    after a crash, never skipped.
    """

    def __init__(self, streams: Iterable[ClaimedStream]) -> None:
        self.start = {stream.path: stream.acked_offset for stream in streams}
        self.reached: dict[str, str] = {}
        self.dropped: set[str] = set()  # streams the server no longer links: never acked
        self._paths: dict[CheckpointKey, str] = {}

    def watch(self, key: CheckpointKey, path: str) -> None:
        self._paths[key] = path

    async def load(self, key: CheckpointKey) -> Position | None:
        path = self._paths[key]
        return Position(self.reached.get(path, self.start[path]))

    async def save(self, key: CheckpointKey, position: Position) -> None:
        self.reached[self._paths[key]] = position.offset

    def skip_to(self, path: str, offset: str) -> None:
        """Ack ``path`` up to ``offset`` without reading it (its data is gone)."""
        self.reached[path] = offset

    def drop(self, paths: Iterable[str]) -> None:
        """Never ack ``paths`` again in this wake (the server no longer links them)."""
        self.dropped.update(paths)

    def acks(self) -> list[StreamAck]:
        """Acks for every stream that moved since the claim (never to ``-1``: a stream
        read again from its start has nothing to ack until a response is handled)."""
        return [
            StreamAck(stream=path, offset=offset)
            for path, offset in self.reached.items()
            if offset not in (self.start[path], OFFSET_START) and path not in self.dropped
        ]


class WakeWorker:
    """Process the pull-wake subscriptions ``subscription_ids`` with ``handler``.

    Run several workers (processes or hosts) with the same subscriptions: the server
    leases each subscription to one of them at a time, and the worker processes every
    stream of the wake from its acknowledged offset, calling ``handler(item,
    context)`` (sync or async) for each JSON item. An item is acked once its handler
    returns, at the next response boundary: heartbeats ack the offset of the last
    server response whose items were all handled, since the protocol has no offset
    inside a response. After a crash, whichever worker gets the wake next sees again
    the items since that boundary: up to one server response per stream (a catch-up
    read may answer with the whole backlog at once). Handlers must be idempotent.

    ``worker`` names this worker to the server (default: host, pid and a random
    suffix). ``max_concurrent_wakes`` bounds the wakes (one per subscription) in
    progress at once. ``on_error`` is the :class:`~durable_streams.Consumer`'s: a
    :class:`~durable_streams.FailureAction` per failed item (SKIP, RETRY, STOP; the
    default STOP releases the wake). ``model`` validates items (pydantic).
    ``heartbeat_interval`` defaults to a third of the lease (at most half of it);
    ``poll_interval`` is how often the worker tries to claim without a wake event (a
    safety net; None: never). ``shutdown_timeout`` bounds giving wakes back on exit.

    Example::

        async def index(item, context):
            await search.add(context.stream, item)

        async with SubscriptionClient(root) as subs:
            worker = WakeWorker(subs, ["chat-indexer"], index, max_concurrent_wakes=8)
            await worker.run()  # until cancelled
    """

    def __init__(
        self,
        subscriptions: SubscriptionClient,
        subscription_ids: Iterable[str],
        handler: WakeHandler,
        *,
        worker: str | None = None,
        max_concurrent_wakes: int = 4,
        on_error: OnItemError | None = None,
        model: type[Any] | pydantic.TypeAdapter[Any] | None = None,
        heartbeat_interval: float | None = None,
        poll_interval: float | None = 30.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        if not isinstance(subscriptions, SubscriptionClient):
            raise InvalidArgumentError(
                "subscriptions must be a SubscriptionClient", field="subscriptions"
            )
        if isinstance(subscription_ids, str):
            subscription_ids = [subscription_ids]
        ids = tuple(dict.fromkeys(subscription_ids))
        if not ids or not all(isinstance(sid, str) and sid for sid in ids):
            raise InvalidArgumentError(
                "subscription_ids must be one or more non-empty strings", field="subscription_ids"
            )
        if not callable(handler):
            raise InvalidArgumentError("handler must be callable", field="handler")
        if isinstance(max_concurrent_wakes, bool) or not isinstance(max_concurrent_wakes, int):
            raise InvalidArgumentError(
                "max_concurrent_wakes must be an int >= 1", field="max_concurrent_wakes"
            )
        if max_concurrent_wakes < 1:
            raise InvalidArgumentError(
                "max_concurrent_wakes must be an int >= 1", field="max_concurrent_wakes"
            )
        for name, value in (
            ("heartbeat_interval", heartbeat_interval),
            ("poll_interval", poll_interval),
            ("shutdown_timeout", shutdown_timeout),
        ):
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise InvalidArgumentError(f"{name} must be a positive number", field=name)
        self._subs = subscriptions
        self._ids = ids
        self._handler = handler
        self._worker = worker or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._slots = anyio.Semaphore(max_concurrent_wakes)  # released by the wake's task
        self._on_error = on_error
        self._model = model
        self._heartbeat_interval = heartbeat_interval
        self._poll_interval = poll_interval
        self._shutdown_timeout = shutdown_timeout
        self._wanted: set[str] = set()  # subscriptions to try to claim
        self._active: set[str] = set()  # subscriptions with a wake in progress here
        self._changed = anyio.Event()
        self._failures: dict[str, int] = {}
        self._running = False
        self._outer: TaskGroup | None = None  # the task group of ``async with``

    @property
    def worker(self) -> str:
        """The name this worker claims with."""
        return self._worker

    @property
    def active(self) -> frozenset[str]:
        """The subscriptions with a wake in progress in this worker."""
        return frozenset(self._active)

    def __repr__(self) -> str:
        return f"WakeWorker({self._worker!r}, {list(self._ids)!r}, active={sorted(self._active)!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> WakeWorker:
        tails = await self._prepare()
        outer = self._outer = anyio.create_task_group()
        await outer.__aenter__()
        try:
            await outer.start(self._serve, tails)
        except BaseException as exc:
            outer.cancel_scope.cancel()
            await outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        outer = self._outer
        if outer is None:
            return None
        self._outer = None
        outer.cancel_scope.cancel()  # shutdown: wakes in progress are given back
        return await outer.__aexit__(exc_type, exc, tb)

    async def run(self) -> None:
        """Serve the subscriptions until cancelled (then release what is held).

        Example::

            with anyio.move_on_after(60):
                await worker.run()
        """
        await self._serve(await self._prepare())

    def kick(self, subscription_id: str | None = None) -> None:
        """Try to claim ``subscription_id`` (all of them if None) now, as a wake event would.

        Example::

            worker.kick("chat-indexer")
        """
        targets = self._ids if subscription_id is None else (subscription_id,)
        self._wanted.update(sid for sid in targets if sid in self._ids)
        self._changed.set()

    # -- the loops ---------------------------------------------------------------------------

    async def _prepare(self) -> dict[str, str]:
        """Check the subscriptions; their wake streams and the offsets to follow them from.

        Done before any task starts, so a missing subscription or wake stream is a plain
        error of ``run()`` or ``async with``.
        """
        if self._running:
            raise UsageError("this WakeWorker is already running")
        wake_streams: set[str] = set()
        for sid in self._ids:
            info = await self._subs.get(sid)
            if info.type != "pull-wake" or not info.wake_stream:
                raise InvalidArgumentError(
                    f"subscription {sid!r} is not a pull-wake subscription",
                    field="subscription_ids",
                )
            wake_streams.add(info.wake_stream)
        tails: dict[str, str] = {}
        for path in sorted(wake_streams):
            tails[path] = (await self._subs.handle(path).head()).next_offset or "-1"
        return tails

    async def _serve(
        self, tails: dict[str, str], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self._running:
            raise UsageError("this WakeWorker is already running")
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                for path, offset in tails.items():
                    tg.start_soon(self._tail, path, offset)
                # Work may be pending with no new wake event (events before the tails
                # above were taken): try every subscription once.
                self.kick()
                if self._poll_interval is not None:
                    tg.start_soon(self._poll, self._poll_interval)
                tg.start_soon(self._dispatch, tg)
                task_status.started()
        finally:
            self._running = False

    async def _tail(self, path: str, offset: str) -> None:
        """Follow a wake stream from ``offset``; each event for our subscriptions is a kick."""
        async with self._subs.handle(path).stream(offset=offset, live="auto") as response:
            async for raw in response.iter_json():
                try:
                    event = WakeEvent.model_validate(raw)
                except pydantic.ValidationError:
                    logger.warning("ignoring a malformed event on wake stream %s", path)
                    continue
                if event.type == "wake" and event.subscription_id in self._ids:
                    self.kick(event.subscription_id)

    async def _poll(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            self.kick()

    async def _dispatch(self, tg: TaskGroup) -> None:
        """Claim wanted subscriptions (one wake each, ``max_concurrent_wakes`` in all)."""
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            for sid in sorted(self._wanted - self._active):
                await self._slots.acquire()
                claimed = None
                try:
                    self._wanted.discard(sid)
                    claimed = await self._claim(sid)
                finally:
                    if claimed is None:
                        self._slots.release()
                if claimed is not None:
                    self._active.add(sid)
                    tg.start_soon(self._wake, *claimed)

    async def _claim(self, sid: str) -> tuple[Claim, float] | None:
        """The claim of ``sid`` and the time it was asked for (its lease runs from then)."""
        sent = _clock()
        try:
            # Retried like any control call: a request that never reached the server is
            # worth sending again. One whose answer was lost cannot be recovered either
            # way (its token was only in that answer); the retry then meets
            # ALREADY_CLAIMED naming this worker, and the wake comes back with a new
            # wake event once that lease expires.
            claim = await self._subs.claim(sid, worker=self._worker)
        except AlreadyClaimedError as error:
            if error.current_holder == self._worker:
                logger.info(
                    "subscription %s is held by this worker's name (%s, generation %s) under a "
                    "claim whose answer was lost: its token never arrived, so the wake is "
                    "processed again after that lease expires",
                    sid,
                    self._worker,
                    error.generation,
                )
            else:  # normal: another worker won the race
                logger.debug("subscription %s is held by %s", sid, error.current_holder)
            return None
        except NoPendingWorkError:  # normal: the work was done meanwhile
            return None
        except DurableStreamError as error:
            logger.warning("claiming subscription %s failed: %s", sid, error)
            return None
        logger.debug("claimed wake %s of subscription %s", claim.generation, sid)
        return claim, sent

    async def _wake(self, claim: Claim, claimed_at: float) -> None:
        sid = claim.subscription_id
        pause = 0.0
        try:
            paced = await self._process(claim, claimed_at)
            if paced:
                count = self._failures[sid] = self._failures.get(sid, 0) + 1
                bound = min(MAX_FAILURE_PAUSE, FIRST_FAILURE_PAUSE * 2 ** (count - 1))
                pause = bound * (0.5 + random.random() / 2)
            else:
                self._failures.pop(sid, None)
        finally:
            self._slots.release()
        try:
            if pause:
                # Not claiming this subscription for a while (others may): the slot is free.
                await _pause(pause)
        finally:
            self._active.discard(sid)
            self._changed.set()  # events that came meanwhile are in _wanted

    async def _process(self, claim: Claim, claimed_at: float) -> bool:
        """One wake, from claim to done ack (or release); whether to pause before the
        next claim of the subscription (the handler failed, or nothing could be acked
        while the server keeps waking it)."""
        progress = _WakeProgress(claim.streams)
        lost = False
        ended = False  # the done ack was answered: nothing to give back
        failure: BaseException | None = None
        lease = claim.lease_ttl_ms / 1000
        interval = min(self._heartbeat_interval or lease / 3, lease / 2)
        result: AckResult | None = None
        try:
            with anyio.CancelScope() as wake_scope:
                async with anyio.create_task_group() as tg:

                    async def heartbeats() -> None:
                        nonlocal lost
                        try:
                            await self._heartbeats(claim, progress, interval, claimed_at)
                        except _LostLease:
                            lost = True
                            wake_scope.cancel()  # stop the handler now: never ack again

                    tg.start_soon(heartbeats)
                    try:
                        for stream in claim.pending_streams:
                            await self._drain(claim, stream, progress)
                    except Exception as error:
                        failure = error
                    tg.cancel_scope.cancel()
            if not lost and failure is None:
                try:
                    result = await self._ack(claim, progress, done=True)
                except DurableStreamError as error:
                    # Not acked: the lease expires and the work is done again (at-least-once).
                    logger.warning(
                        "the done ack of wake %s of subscription %s failed: %s",
                        claim.generation,
                        claim.subscription_id,
                        error,
                    )
                ended = True
        except BaseException:
            # Cancelled (shutdown), even during the done ack: give back what is held,
            # unless it is no longer ours.
            if not lost and not ended:
                with anyio.move_on_after(self._shutdown_timeout, shield=True):
                    await self._give_back(claim, progress)
            raise
        if lost:
            logger.warning(
                "wake %s of subscription %s lost its lease (fenced, or not renewed in time): "
                "stopped without acking",
                claim.generation,
                claim.subscription_id,
            )
            return False
        if failure is not None:
            logger.warning(
                "the handler failed in wake %s of subscription %s: released for a retry (%s)",
                claim.generation,
                claim.subscription_id,
                failure,
            )
            with anyio.move_on_after(self._shutdown_timeout, shield=True):
                await self._give_back(claim, progress)
            return True
        if result is None or not result.next_wake:
            return False
        if progress.acks():
            self.kick(claim.subscription_id)  # more work came meanwhile: on with it
            return False
        # Woken again at once for work this wake could not ack (a stream that cannot be
        # read): claiming again now would spin, so claim again after a pause, as after
        # a failure.
        self.kick(claim.subscription_id)
        logger.warning(
            "wake %s of subscription %s acknowledged nothing and the server still has work "
            "for it: pausing before claiming it again",
            claim.generation,
            claim.subscription_id,
        )
        return True

    async def _drain(self, claim: Claim, stream: ClaimedStream, progress: _WakeProgress) -> None:
        """Hand the stream's items from its acked offset to the tail to the handler."""
        handle = self._subs.handle(stream.path)
        context = WakeContext(
            subscription_id=claim.subscription_id,
            stream=stream.path,
            wake_id=claim.wake_id,
            generation=claim.generation,
            worker=self._worker,
        )
        name = f"subscription:{claim.subscription_id}"
        progress.watch(CheckpointKey.for_stream(name, handle.url), stream.path)
        handler = self._handler

        def handle_item(item: Any) -> Awaitable[object] | object:
            return handler(item, context)

        consumer = Consumer(
            handle,
            name=name,
            checkpoints=progress,
            live=False,
            commit_every=CommitEvery(items=1, seconds=None),
            on_error=self._on_error,
        )
        async with consumer:
            try:
                await consumer.run(handle_item, model=self._model)
                return
            except PositionRejectedError as error:
                rejected: PositionRejectedError = error
            if rejected.reason.status == 410 and stream.acked_offset != OFFSET_START:
                # The data at the acked offset is no longer retained (or the stream was
                # soft-deleted): what is still retained is read, from its start.
                logger.warning(
                    "stream %s of subscription %s no longer has the data at its acked offset "
                    "(410): reading from the oldest data retained",
                    stream.path,
                    claim.subscription_id,
                )
                await consumer.seek(OFFSET_START)
                try:
                    await consumer.run(handle_item, model=self._model)
                    return
                except PositionRejectedError as again:
                    rejected = again
        if rejected.reason.status in (404, 410):
            # Deleted (the server unlinks it: the ack is dropped) or expired (the
            # server keeps it linked, and pending for ever unless acked).
            logger.warning(
                "stream %s of subscription %s is gone (%s): its data cannot be read any "
                "more; acking it up to the wake's tail %s",
                stream.path,
                claim.subscription_id,
                rejected.reason.status,
                stream.tail_offset,
            )
            progress.skip_to(stream.path, stream.tail_offset)
        else:  # a position the server refuses (400): never skip data for that
            logger.warning(
                "stream %s of subscription %s cannot be read (not acked): %s",
                stream.path,
                claim.subscription_id,
                rejected,
            )

    async def _heartbeats(
        self, claim: Claim, progress: _WakeProgress, interval: float, claimed_at: float
    ) -> None:
        """Extend the lease with the progress so far until cancelled; raise _LostLease."""
        lease = claim.lease_ttl_ms / 1000
        # The server starts (and renews) the lease when it handles the request, some
        # time after it was sent: count from the sending, never from the answer.
        lease_ends = claimed_at + lease
        while True:
            await _sleep(interval)
            # A heartbeat that cannot get through before the lease ends: the lease is
            # someone else's by then, so stop rather than process unprotected.
            remaining = lease_ends - _clock()
            if remaining <= 0:
                raise _LostLease
            with anyio.move_on_after(remaining):
                sent = _clock()
                try:
                    await self._ack(claim, progress, done=False)
                    lease_ends = sent + lease
                    continue
                except (FencedError, WakeTokenError, SubscriptionNotFoundError) as error:
                    raise _LostLease from error
                except DurableStreamError as error:
                    logger.warning(
                        "heartbeat of subscription %s failed (retrying): %s",
                        claim.subscription_id,
                        error,
                    )
            if _clock() >= lease_ends:
                raise _LostLease

    async def _ack(self, claim: Claim, progress: _WakeProgress, *, done: bool) -> AckResult:
        """Ack the progress (a heartbeat, or the done ack).

        The server applies the acks of a request all or nothing: one stream it no
        longer links (deleted during the wake) would make every ack of the wake fail.
        Such streams are dropped from the acks and the ack sent once more.
        """
        acks = progress.acks()
        try:
            return await self._subs.ack(claim, acks, done=done)
        except AckOffsetError:
            if not acks:
                raise
            linked = {link.path for link in (await self._subs.get(claim.subscription_id)).streams}
            stale = [ack.stream for ack in acks if ack.stream not in linked]
            if not stale:
                raise
            logger.warning(
                "subscription %s no longer links %s (deleted during wake %s): not acking it",
                claim.subscription_id,
                ", ".join(stale),
                claim.generation,
            )
            progress.drop(stale)
        return await self._subs.ack(claim, progress.acks(), done=done)

    async def _give_back(self, claim: Claim, progress: _WakeProgress) -> None:
        """Ack what completed and release the wake (another worker goes on from there)."""
        try:
            if progress.acks():
                await self._ack(claim, progress, done=False)
            await self._subs.release(claim)
        except FencedError:
            # The wake is over already (a done ack that was applied as it was cancelled,
            # or a newer wake): nothing is held.
            logger.debug(
                "wake %s of subscription %s was already over",
                claim.generation,
                claim.subscription_id,
            )
        except DurableStreamError as error:
            logger.warning(
                "releasing wake %s of subscription %s failed (its lease will expire): %s",
                claim.generation,
                claim.subscription_id,
                error,
            )
