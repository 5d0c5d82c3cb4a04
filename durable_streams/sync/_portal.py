"""The one background event loop of the sync API, and blocking calls into it.

Every sync object runs the async core on a single event loop thread shared by
the whole process (an anyio blocking portal on asyncio). It starts on first
use, restarts in a forked child, and stops at interpreter exit after the open
producers were flushed. A blocking call waits for its task; if the wait ends
early (``KeyboardInterrupt``, a :func:`fail_after` deadline), the task is
cancelled and the call returns only once it has stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from durable_streams import RequestTimeoutError, UsageError
from durable_streams._threads import mark_async_library

__all__ = [
    "call",
    "fail_after",
    "get_portal",
    "get_loop",
    "register_producer",
    "run_sync",
    "stop_cancelled",
]

T = TypeVar("T")

logger = logging.getLogger("durable_streams")

#: How long a cancelled call, or the flush of an open producer at exit, may take to stop.
STOP_TIMEOUT = 10.0

_deadline: ContextVar[float | None] = ContextVar("durable_streams_sync_deadline", default=None)


class _Loop:
    """The process's portal: started lazily under a lock, stopped once at exit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.portal: BlockingPortal | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: int | None = None  # the loop thread's ident
        self.manager: AbstractContextManager[BlockingPortal] | None = None
        self.stopped = False
        self.producers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.orphans: list[object] = []  # the loops of parent processes (after fork)

    def get(self) -> BlockingPortal:
        portal = self.portal
        if portal is not None:
            return portal
        with self.lock:
            if self.stopped:
                raise UsageError("the durable_streams.sync event loop has stopped (exiting)")
            if self.portal is None:
                manager = start_blocking_portal("asyncio", name="durable-streams-sync")
                portal = manager.__enter__()
                self.loop = portal.call(asyncio.get_running_loop)
                self.thread = portal.call(threading.get_ident)
                self.portal, self.manager = portal, manager
            return self.portal

    def stop(self) -> None:
        # The open producers flush first, through the loop, which must still take
        # calls then; only after that is it marked stopped and shut down.
        for producer in list(self.producers):
            try:
                with fail_after(STOP_TIMEOUT):
                    producer.flush_at_exit()
            except Exception as error:  # exiting: report, never raise
                logger.warning(
                    "durable_streams.sync: a producer failed to flush at exit: %s", error
                )
        with self.lock:
            self.stopped = True
            portal, manager = self.portal, self.manager
            self.portal = self.manager = self.loop = None
        if portal is None or manager is None:
            return
        with contextlib.suppress(RuntimeError):  # already stopped
            portal.call(portal.stop, True)
        manager.__exit__(None, None, None)

    def forget(self) -> None:
        """In a forked child: the parent's loop thread does not exist here.

        Its portal and context manager are kept referenced for good: collecting the
        manager would run its cleanup, which waits for the missing thread forever.
        """
        self.lock = threading.Lock()
        if self.manager is not None:
            self.orphans.append((self.portal, self.manager))
        self.portal = self.manager = self.loop = None
        self.producers = weakref.WeakSet()


_loop = _Loop()
atexit.register(_loop.stop)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_loop.forget)


def in_event_loop() -> bool:
    """Whether the calling thread is running an asyncio or trio event loop.

    Asked by every blocking call: trio's ``in_trio_run()`` where it exists is
    cheaper than catching ``current_trio_token()``'s error.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    in_trio_run = getattr(trio.lowlevel, "in_trio_run", None)
    if in_trio_run is not None:
        return bool(in_trio_run())
    try:  # trio < 0.26
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def get_portal() -> BlockingPortal:
    """The shared portal (started on first use); refuses callers inside an event loop."""
    if in_event_loop():
        raise UsageError(
            "durable_streams.sync was called from a running event loop, where it would block "
            "the loop; use the async API (durable_streams.StreamHandle) there"
        )
    return _loop.get()


def get_loop() -> asyncio.AbstractEventLoop:
    """The shared event loop (starts it if needed), for callbacks scheduled from other threads."""
    get_portal()
    loop = _loop.loop
    if loop is None:
        raise UsageError("the durable_streams.sync event loop has stopped (exiting)")
    return loop


def _schedule(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # closed between get_loop() and here: the process is exiting
        raise UsageError("the durable_streams.sync event loop has stopped (exiting)") from None


class _Outcome(Generic[T]):
    """What a function run on the loop returned or raised; ``finished`` is released then.

    A bare lock rather than a ``concurrent.futures.Future``: a blocking call is
    two thread wake-ups whatever we do, and every microsecond of bookkeeping
    around them adds to each call's latency.
    """

    __slots__ = ("error", "finished", "value")

    def __init__(self) -> None:
        self.value: T | None = None
        self.error: BaseException | None = None
        self.finished = threading.Lock()
        self.finished.acquire()

    def unwrap(self) -> T:
        error = self.error
        if error is not None:
            self.error = None  # no reference cycle through the traceback
            raise error
        return self.value  # type: ignore[return-value]


def run_sync(func: Callable[..., T], /, *args: Any) -> T:
    """Run the plain function ``func(*args)`` on the shared loop (quick, not cancellable).

    Example::

        run_sync(producer.append, item)
    """
    outcome: _Outcome[T] = _Outcome()

    def run() -> None:
        mark_async_library("asyncio")
        try:
            outcome.value = func(*args)
        except BaseException as error:
            outcome.error = error
        finally:
            outcome.finished.release()

    _schedule(get_loop(), run)
    outcome.finished.acquire()
    return outcome.unwrap()


def register_producer(producer: Any) -> None:
    """Flush ``producer`` (its ``flush_at_exit()``) before the loop stops at exit."""
    _loop.producers.add(producer)


def unregister_producer(producer: Any) -> None:
    _loop.producers.discard(producer)


@contextlib.contextmanager
def fail_after(seconds: float) -> Iterator[None]:
    """Give every blocking call of the sync API in this block a shared deadline.

    A call still waiting when it passes is cancelled (its HTTP request, read or
    flush stops) and raises :class:`~durable_streams.RequestTimeoutError`. A
    read interrupted this way is over: resume from its ``offset``/``position``.
    Deadlines nest (the earlier one wins) and are per thread.

    Example::

        with durable_streams.sync.fail_after(5):
            for batch in res:       # a live read: stop waiting after 5 s
                print(batch.items)
    """
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the calling thread's deadline (None: none set)."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def timed_out() -> RequestTimeoutError:
    return RequestTimeoutError("the call did not complete before its fail_after() deadline")


class _Call(_Outcome[T]):
    """One blocking call: its task on the loop, whose cancel scope holds the deadline."""

    __slots__ = ("cancelled", "ended", "scope", "started", "timeout")

    def __init__(self, timeout: float | None) -> None:
        super().__init__()
        self.timeout = timeout
        self.scope: anyio.CancelScope | None = None
        self.started = False
        self.cancelled = False
        self.ended = False

    def start(self, func: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> None:
        """On the loop thread: run the call as a task; its end releases the caller."""
        self.started = True
        loop = asyncio.get_running_loop()
        coro = self.run(func, args, kwargs)
        if sys.version_info >= (3, 12):
            # Run its first step now (an append writes its request here) rather than
            # one turn of the loop later: 0.05-0.15 ms less per blocking call.
            task = asyncio.Task(coro, loop=loop, eager_start=True)
        else:
            task = loop.create_task(coro)
        task.add_done_callback(self.never_ran)

    async def run(self, func: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> None:
        # The caller is released from here, not from a done callback: that would
        # cost it one more turn of the loop before it can go on.
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.cancelled:  # the caller gave up before the task started
                    scope.cancel()
                if self.timeout is not None:
                    scope.deadline = anyio.current_time() + self.timeout
                self.value = await func(*args, **kwargs)
                return
            self.error = timed_out()  # only a deadline (or the caller, who is gone) cancels it
        except asyncio.CancelledError:
            self.error = _stopping()  # cancelled from outside: the loop is shutting down
            raise
        except BaseException as error:  # the caller's to handle, not the loop's
            self.error = error
        finally:
            self.end()

    def never_ran(self, task: asyncio.Task[None]) -> None:
        if not self.ended:  # cancelled before its first step (loop shutdown): run() never ran
            self.error = _stopping()
            self.end()

    def end(self) -> None:
        self.ended = True
        self.finished.release()

    def cancel(self) -> None:
        """On the loop thread: stop the call (before or after its task started).

        Scheduled after ``start`` if that was scheduled at all: if it was not (the
        caller was interrupted first), there is nothing to stop but the wait.
        """
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()
        elif not self.started and not self.ended:
            self.error = UsageError("the call was interrupted before it started")
            self.end()


def _stopping() -> UsageError:
    return UsageError("the call was cancelled (the durable_streams.sync event loop is stopping)")


def stop_cancelled(future: concurrent.futures.Future[Any], done: threading.Event) -> None:
    """Cancel a portal task whose caller stopped waiting, and wait (bounded) until it ended.

    On the loop thread itself (a suspended sync iterator closed by the garbage
    collector there) the task cannot end while we wait: it is only cancelled.
    """
    if future.cancel() and threading.get_ident() != _loop.thread:
        done.wait(STOP_TIMEOUT)


def call(func: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """Run ``await func(*args, **kwargs)`` on the shared loop and wait for its result.

    One round trip between threads. The thread's :func:`fail_after` deadline
    becomes the task's; an exception raised while waiting (``KeyboardInterrupt``)
    cancels the task, and returns only once it has stopped.

    Example::

        info = call(async_handle.head)
    """
    loop = get_loop()
    state: _Call[T] = _Call(remaining())
    try:
        _schedule(loop, lambda: state.start(func, args, kwargs))
        state.finished.acquire()
    except BaseException:  # KeyboardInterrupt while waiting: stop the task first
        if not state.ended:
            with contextlib.suppress(UsageError):  # the loop is gone, and the task with it
                _schedule(loop, state.cancel)
                state.finished.acquire(timeout=STOP_TIMEOUT)
        raise
    return state.unwrap()
