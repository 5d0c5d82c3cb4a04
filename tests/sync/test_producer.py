"""The sync IdempotentProducer's staging: append() without a round trip to the loop thread.

Against the in-memory test server (in-process client). To see what append()
does while the loop cannot run, a test parks the loop thread on a gate (a
callback that blocks until the test opens it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest

from durable_streams import (
    EmptyAppendError,
    InvalidArgumentError,
    NotFoundError,
    ProducerBufferFullError,
    ProducerClosedError,
    ProducerFlushError,
    UsageError,
)
from durable_streams.sync import IdempotentProducer, StreamHandle
from durable_streams.sync._portal import get_loop

JSON = "application/json"
GATE_TIMEOUT = 30.0


@contextmanager
def loop_parked(then: Callable[[], object] = lambda: None) -> Iterator[None]:
    """Keep the shared loop thread busy (blocked) until the block ends, then run ``then`` there."""
    parked, release = threading.Event(), threading.Event()

    def park() -> None:
        parked.set()
        release.wait(GATE_TIMEOUT)
        then()

    get_loop().call_soon_threadsafe(park)
    assert parked.wait(GATE_TIMEOUT)
    try:
        yield
    finally:
        release.set()


def stored(handle: StreamHandle) -> list[object]:
    with handle.stream() as res:
        return list(res.iter_json())


def test_append_returns_while_the_loop_thread_is_busy(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        with IdempotentProducer(handle, "staged") as producer:
            with loop_parked():
                for n in range(100):
                    producer.append({"n": n})  # would wait for the parked loop before
                assert producer.pending == 100
                assert producer.buffered_bytes == sum(len(f'{{"n":{n}}}') + 1 for n in range(100))
            producer.flush()
            assert producer.pending == 0
        assert stored(handle) == [{"n": n} for n in range(100)]


def test_encoding_errors_and_a_full_buffer_are_raised_by_append_itself(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        with IdempotentProducer(handle, "full", max_buffered_bytes=100) as producer:
            accepted: list[int] = []

            def fill() -> None:
                for n in range(100):
                    producer.append({"n": n})
                    accepted.append(n)

            with loop_parked():
                with pytest.raises(InvalidArgumentError, match="cannot serialise"):
                    producer.append({"not json": object()})
                with pytest.raises(EmptyAppendError):
                    producer.append(b"")
                # Staged items count against the buffer though the loop has not seen them.
                with pytest.raises(ProducerBufferFullError, match="buffer is full"):
                    fill()
            assert 5 < len(accepted) < 20
            producer.flush()
            producer.append({"n": "after"})  # room again once acknowledged
        assert stored(handle) == [{"n": n} for n in accepted] + [{"n": "after"}]


def test_items_keep_the_order_of_the_calls_that_queued_them(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        with IdempotentProducer(handle, "order") as producer:
            producer.append({"n": 0})
            producer.append_many([{"n": 1}, {"n": 2}])
            producer.append({"n": 3})
            ack = producer.send({"n": 4})
            producer.append({"n": 5})
            group_ack = producer.send_many([{"n": 6}, {"n": 7}])
            producer.append({"n": 8})
        assert stored(handle) == [{"n": n} for n in range(9)]
        assert ack.offset is not None
        assert group_ack.offset is not None
        assert ack.offset < group_ack.offset


def test_items_appended_before_close_are_stored_and_later_ones_refused(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        producer = IdempotentProducer(handle, "closing", linger_ms=10_000)
        producer.start()
        returned: list[int] = []
        refused: list[BaseException] = []
        some_queued = threading.Event()

        def feed() -> None:
            for n in range(1_000_000):
                try:
                    producer.append({"n": n})
                except ProducerClosedError as error:
                    refused.append(error)
                    return
                returned.append(n)
                if n == 500:
                    some_queued.set()

        feeder = threading.Thread(target=feed)
        feeder.start()
        assert some_queued.wait(GATE_TIMEOUT)
        producer.close()
        feeder.join(GATE_TIMEOUT)
        assert not feeder.is_alive()
        assert refused, "an append after close() must raise"
        # Every append that returned was stored, exactly once and in order; none after.
        assert stored(handle) == [{"n": n} for n in returned]


def test_items_staged_when_the_producer_turns_fatal_are_reported_by_flush(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        producer = IdempotentProducer(handle, "fatal")
        producer.start()
        gone = NotFoundError("the stream was deleted")
        # The producer learns the stream is gone after the items were accepted and
        # before the loop queued them: they must fail visibly, not vanish.
        with loop_parked(then=lambda: producer._producer._accumulator.set_fatal(gone)):
            for n in range(3):
                producer.append({"n": n})
        with pytest.raises(ProducerFlushError) as caught:
            producer.flush()
        assert sum(failure.item_count for failure in caught.value.failures) == 3
        assert all(failure.error is gone for failure in caught.value.failures)
        with pytest.raises(NotFoundError):
            producer.append({"n": 3})  # refused at once from now on
        producer.detach()  # the failures were reported once, by flush()
        assert stored(handle) == []


def test_append_never_blocks_so_a_running_event_loop_may_call_it(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        with IdempotentProducer(handle, "in-loop") as producer:

            async def inside() -> None:
                producer.append({"n": 0})

            async def blocking_inside() -> None:
                producer.flush()

            anyio.run(inside)
            with pytest.raises(UsageError, match="async API"):
                anyio.run(blocking_inside)  # a call that waits is still refused there
        assert stored(handle) == [{"n": 0}]
