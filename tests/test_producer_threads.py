"""IdempotentProducer.append_from_thread(): items handed to the loop by other threads.

Against the in-memory test server (in-process client), on asyncio and trio.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest

from durable_streams import (
    EmptyAppendError,
    IdempotentProducer,
    InvalidArgumentError,
    ProducerBufferFullError,
    ProducerClosedError,
    ProducerError,
    StreamHandle,
)

pytestmark = pytest.mark.anyio

JSON = "application/json"


async def stored(handle: StreamHandle) -> list[Any]:
    return [item async for item in (await handle.stream()).iter_json()]


async def test_worker_threads_append_each_item_once_in_their_order(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    threads, per_thread = 4, 2_000
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        await handle.create(content_type=JSON)
        async with IdempotentProducer(handle, "threads") as producer:

            def feed(thread: int) -> None:
                for n in range(per_thread):
                    producer.append_from_thread({"t": thread, "n": n})

            async with anyio.create_task_group() as group:
                for thread in range(threads):
                    group.start_soon(anyio.to_thread.run_sync, feed, thread)
            # The threads' calls returned before this flush: it covers their items.
            await producer.flush()
            assert producer.pending == 0
        items = await stored(handle)
    assert len(items) == threads * per_thread
    assert set(Counter((item["t"], item["n"]) for item in items).values()) == {1}
    for thread in range(threads):
        assert [item["n"] for item in items if item["t"] == thread] == list(range(per_thread))


async def test_errors_are_raised_on_the_calling_thread(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        await handle.create(content_type=JSON)
        producer = IdempotentProducer(handle, "errors", max_buffered_bytes=64)
        with pytest.raises(ProducerError, match="not started"):
            await anyio.to_thread.run_sync(producer.append_from_thread, {"n": 0})
        async with producer:
            with pytest.raises(InvalidArgumentError, match="cannot serialise"):
                await anyio.to_thread.run_sync(producer.append_from_thread, {"x": object()})
            with pytest.raises(EmptyAppendError):
                await anyio.to_thread.run_sync(producer.append_from_thread, b"")
            accepted: list[int] = []

            def fill() -> None:
                # All in one thread call: the loop is not running meanwhile, so every
                # accepted item is still in hand-over and must count against the buffer.
                for n in range(100):
                    producer.append_from_thread({"n": n})
                    accepted.append(n)

            with pytest.raises(ProducerBufferFullError):
                await anyio.to_thread.run_sync(fill)
            assert 0 < len(accepted) < 10
            assert producer.buffered_bytes <= 64
        with pytest.raises(ProducerClosedError):
            await anyio.to_thread.run_sync(producer.append_from_thread, {"n": "late"})
        with pytest.raises(ProducerClosedError):  # pre-serialised: no encoding step to catch it
            await anyio.to_thread.run_sync(producer.append_from_thread, b'{"n":"late"}')
        assert await stored(handle) == [{"n": n} for n in accepted]


async def test_sends_on_the_loop_and_a_feeding_thread_under_a_small_buffer(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    # send() waits for room while a thread keeps filling the buffer: every item
    # accepted by either is stored once, each side in its own order.
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        await handle.create(content_type=JSON)
        async with IdempotentProducer(handle, "room", max_buffered_bytes=200) as producer:
            accepted: list[int] = []
            stop = threading.Event()

            def feed() -> None:
                n = 0
                while not stop.is_set() and n < 100_000:  # bounded even if the limit broke
                    try:
                        producer.append_from_thread({"n": n})
                    except ProducerBufferFullError:
                        anyio.from_thread.run_sync(lambda: None)  # let the loop drain
                        continue
                    accepted.append(n)
                    n += 1

            async with anyio.create_task_group() as group:
                group.start_soon(anyio.to_thread.run_sync, feed)
                for n in range(50):
                    await producer.send({"send": n})
                    assert producer.buffered_bytes <= 200
                stop.set()
            await producer.flush()
        items = await stored(handle)
    assert [item["send"] for item in items if "send" in item] == list(range(50))
    assert [item["n"] for item in items if "n" in item] == accepted
    assert accepted


@pytest.mark.parametrize(
    ("item", "max_batch_bytes", "max_batch_items"),
    [(b'"aaaaaa"', 10, None), (b"1", 1024, 1)],
    ids=["10-byte-batches", "one-item-batches"],
)
async def test_items_opening_batches_of_their_own_stay_within_the_buffer(
    ds_client: httpx.AsyncClient,
    ds_stream_url: str,
    item: bytes,
    max_batch_bytes: int,
    max_batch_items: int | None,
) -> None:
    # Each of these items starts a batch, whose JSON body costs its brackets once
    # more: accepting items in hand-over must count that too.
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        await handle.create(content_type=JSON)
        async with IdempotentProducer(
            handle,
            "bound",
            max_buffered_bytes=100,
            max_batch_bytes=max_batch_bytes,
            max_batch_items=max_batch_items,
        ) as producer:
            accepted = 0

            def fill() -> None:
                nonlocal accepted
                with contextlib.suppress(ProducerBufferFullError):
                    while True:
                        producer.append_from_thread(item)
                        accepted += 1

            worker = threading.Thread(target=fill)
            worker.start()
            worker.join()  # blocks the loop on purpose: nothing is drained meanwhile
            producer._drain()  # what the scheduled callback does once the loop runs
            assert producer.buffered_bytes <= 100
            assert accepted > 0
        assert len(await stored(handle)) == accepted


SIGNAL_CHILD = """
import sys, threading
from durable_streams import sync
from durable_streams.testing import InMemoryServer

server = InMemoryServer()
with sync.StreamHandle(server.stream_url("s"), client=server.client()) as handle:
    handle.create(content_type="application/json")
    with sync.IdempotentProducer(handle, "signal") as producer:
        fired = threading.Event()

        def interrupt(frame, event, arg):
            # As if a signal handler ran here, inside append()'s critical section.
            if event == "call" and frame.f_code.co_name == "has_room" and not fired.is_set():
                fired.set()
                producer.append({"from": "handler"})

        sys.setprofile(interrupt)
        producer.append({"from": "thread"})
        sys.setprofile(None)
    print(fired.is_set(), sorted(item["from"] for item in handle.stream().json()))
"""


def test_a_signal_handler_may_append_while_its_thread_is_inside_append() -> None:
    # A signal handler runs on the interrupted thread, possibly while that thread
    # holds the producer's hand-over lock: appending there must not deadlock. A
    # subprocess, so that a deadlock fails the test instead of hanging the suite.
    try:
        done = subprocess.run(
            [sys.executable, "-c", SIGNAL_CHILD], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("append() deadlocked inside a nested append()")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True ['handler', 'thread']\n"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_forked_child_cannot_use_the_parents_producer(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    # The child has no copy of the parent's loop thread: items handed to it would
    # never be sent, so the child is told at once.
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        await handle.create(content_type=JSON)
        async with IdempotentProducer(handle, "forked") as producer:
            pid = os.fork()
            if pid == 0:
                try:
                    producer.append_from_thread(b"1")
                except ProducerClosedError:
                    os._exit(0)
                except BaseException:
                    os._exit(2)
                os._exit(1)
            _, status = await anyio.to_thread.run_sync(os.waitpid, pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
