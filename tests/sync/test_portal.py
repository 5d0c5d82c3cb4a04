"""The sync API's background loop: refusing callers inside an event loop, deadlines."""

from __future__ import annotations

import os
import signal
import threading
import time

import anyio
import pytest

from durable_streams import RequestTimeoutError, UsageError
from durable_streams.sync import StreamHandle, fail_after
from durable_streams.sync._portal import call, in_event_loop

pytestmark = pytest.mark.anyio


async def test_a_running_event_loop_is_refused() -> None:
    assert in_event_loop()
    with pytest.raises(UsageError, match="async API"):
        StreamHandle("http://127.0.0.1:9/v1/stream/x")


async def test_a_worker_thread_of_an_event_loop_may_use_it() -> None:
    def in_worker() -> bool:
        return in_event_loop()

    assert await anyio.to_thread.run_sync(in_worker) is False


def test_fail_after_cancels_the_call_and_waits_until_it_stopped() -> None:
    stopped = threading.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

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
