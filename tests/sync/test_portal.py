"""The sync API's background loop: refusing callers inside an event loop, deadlines, Ctrl-C."""

from __future__ import annotations

import contextvars
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

from durable_streams import RequestTimeoutError, UsageError
from durable_streams.sync import StreamHandle, _portal, fail_after
from durable_streams.sync._portal import call, in_event_loop, run_sync
from tests.interrupt import interrupt_when_ready

pytestmark = pytest.mark.anyio


def sleeper() -> tuple[Callable[[], Awaitable[None]], threading.Event]:
    """A coroutine function that waits forever, and the event its end (cancellation) sets."""
    stopped = threading.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    return forever, stopped


async def test_a_running_event_loop_is_refused() -> None:
    assert in_event_loop()
    with pytest.raises(UsageError, match="async API"):
        StreamHandle("http://127.0.0.1:9/v1/stream/x")


async def test_a_worker_thread_of_an_event_loop_may_use_it() -> None:
    def in_worker() -> bool:
        return in_event_loop()

    assert await anyio.to_thread.run_sync(in_worker) is False


def test_fail_after_cancels_the_call_and_waits_until_it_stopped() -> None:
    forever, stopped = sleeper()

    started = time.monotonic()
    with pytest.raises(RequestTimeoutError), fail_after(0.2):
        call(forever)
    assert stopped.is_set()  # the task was cancelled before call() returned
    assert time.monotonic() - started < 5


def test_deadlines_nest_and_the_earlier_wins() -> None:
    async def nap() -> str:
        await anyio.sleep(0.05)
        return "done"

    with fail_after(10), fail_after(5):
        assert call(nap) == "done"
    with pytest.raises(RequestTimeoutError), fail_after(0.01), fail_after(30):
        call(anyio.sleep, 5)


def test_errors_raised_by_the_task_reach_the_caller() -> None:
    async def boom() -> None:
        raise UsageError("from the loop")

    with pytest.raises(UsageError, match="from the loop"):
        call(boom)


def test_a_forked_child_starts_its_own_loop() -> None:
    async def answer() -> int:
        return 42

    assert call(answer) == 42  # the parent's loop is running
    pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread does not exist here
        try:
            code = 0 if call(answer) == 42 else 1
        except BaseException:
            code = 2
        os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        threading.Event().wait(0.05)  # polling a child process: no event to wait on
    assert os.waitstatus_to_exitcode(status) == 0


CTRL_C_CALL_CHILD = """
import anyio, sys
from durable_streams.sync._portal import call

state = {"cancelled": False}

async def wait_forever():
    print("started", flush=True)
    try:
        await anyio.sleep_forever()
    finally:
        state["cancelled"] = True

try:
    call(wait_forever)
except KeyboardInterrupt:
    # call() returns only once the task has stopped.
    print("interrupted", "cancelled" if state["cancelled"] else "still running", flush=True)
"""


def test_ctrl_c_during_a_call_cancels_its_task_before_returning() -> None:
    done = interrupt_when_ready(CTRL_C_CALL_CHILD, ready="started")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "interrupted cancelled\n"


def test_the_callers_context_reaches_the_task() -> None:
    # Telemetry (the current span) and anything else in contextvars follows the call.
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    async def read_marker() -> str:
        return marker.get()

    token = marker.set("from the caller")
    try:
        assert call(read_marker) == "from the caller"
    finally:
        marker.reset(token)
    assert call(read_marker) == "unset"


def test_run_sync_functions_may_use_anyio() -> None:
    # Plain functions run as loop callbacks, outside any task: anyio must still
    # find the running library (the sync producer's append starts timers this way).
    def library() -> str:
        return sniffio.current_async_library()

    assert run_sync(library) == "asyncio"
    assert run_sync(lambda: anyio.Event().is_set()) is False


def test_run_sync_errors_reach_the_caller() -> None:
    def boom() -> None:
        raise UsageError("raised on the loop")

    with pytest.raises(UsageError, match="raised on the loop"):
        run_sync(boom)


def test_many_threads_share_the_loop() -> None:
    async def echo(n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    def worker(base: int) -> list[int]:
        return [call(echo, base + n) for n in range(200)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(0, 8000, 1000)))
    assert results == [list(range(base, base + 200)) for base in range(0, 8000, 1000)]


@pytest.mark.parametrize("queued", [False, True], ids=["before-queueing", "after-queueing"])
def test_an_interrupt_while_handing_the_call_over_ends_it_at_once(
    monkeypatch: pytest.MonkeyPatch, queued: bool
) -> None:
    # Ctrl-C may land while call() is still handing its task to the loop: before
    # the start is queued (nothing to stop: no wait for a task that never comes)
    # or right after (the task is stopped before call() returns).
    forever, stopped = sleeper()

    schedule = _portal._schedule
    interrupted = False

    def interrupting(loop: Any, callback: Callable[[], object]) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            if queued:
                schedule(loop, callback)
            raise KeyboardInterrupt
        schedule(loop, callback)

    monkeypatch.setattr(_portal, "_schedule", interrupting)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        call(forever)
    assert time.monotonic() - started < _portal.STOP_TIMEOUT / 2  # no wait for a lost task
    assert stopped.is_set() is queued
