"""IdempotentProducer against the reference server: batching, pipelining, epochs, closing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from pydantic import BaseModel

from durable_streams import (
    BatchFailure,
    DurableStreamError,
    IdempotentProducer,
    ProducerBufferFullError,
    ProducerClosedError,
    ProducerFlushError,
    ProducerIdentityError,
    StaleEpochError,
    StreamClosedError,
    StreamHandle,
)
from tests.server.harness import ReferenceServer

pytestmark = pytest.mark.anyio

BYTES = "application/octet-stream"
JSON = "application/json"


async def read_pages(url: str) -> tuple[list[bytes], bool]:
    """Every response body of a catch-up with plain httpx (offset -1, following
    Stream-Next-Offset to the tail), and whether the stream is closed."""
    pages: list[bytes] = []
    offset = "-1"
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(url, params={"offset": offset})
            assert response.status_code == 200, response.text
            pages.append(response.content)
            offset = response.headers["stream-next-offset"]
            if "stream-up-to-date" in response.headers:
                return pages, response.headers.get("stream-closed") == "true"


async def read_stream(url: str) -> tuple[bytes, bool]:
    """The whole (byte) stream, and whether it is closed."""
    pages, closed = await read_pages(url)
    return b"".join(pages), closed


async def read_json(url: str) -> list[object]:
    """The whole JSON stream: one array per response, merged."""
    pages, _ = await read_pages(url)
    return [item for page in pages for item in json.loads(page)]


@pytest.fixture
async def handle(stream_url: str) -> AsyncIterator[StreamHandle]:
    async with StreamHandle(stream_url) as created:
        await created.create(content_type=BYTES)
        yield created


@pytest.fixture
async def json_handle(stream_url: str) -> AsyncIterator[StreamHandle]:
    async with StreamHandle(stream_url) as created:
        await created.create(content_type=JSON)
        yield created


# -- batching ---------------------------------------------------------------------------------


async def test_batches_are_cut_at_max_batch_bytes(handle: StreamHandle) -> None:
    items = [bytes([65 + i % 26]) * 100 for i in range(25)]
    async with IdempotentProducer(handle, "p", max_batch_bytes=1000, linger_ms=10_000) as producer:
        for item in items:
            producer.append(item)
        await producer.flush()
        # 10 + 10 items reach the limit; flush cuts the last 5.
        assert producer.stats.acked_batches == 3
        assert producer.next_seq == 3
        assert producer.stats.acked_messages == 25
    data, closed = await read_stream(handle.url)
    assert data == b"".join(items)
    assert not closed


async def test_batches_are_cut_at_max_batch_items(json_handle: StreamHandle) -> None:
    async with IdempotentProducer(
        json_handle, "p", max_batch_items=4, linger_ms=10_000
    ) as producer:
        for n in range(10):
            producer.append({"n": n})
        await producer.flush()
        assert producer.stats.acked_batches == 3
    assert await read_json(json_handle.url) == [{"n": n} for n in range(10)]


async def test_linger_sends_a_batch_without_flush(handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p", epoch=0, linger_ms=20) as producer:
        producer.append(b"a")
        producer.append(b"b")
        with anyio.fail_after(5):
            ack = await producer.send(b"c")  # nobody flushes: the linger timer sends it
        assert (ack.epoch, ack.seq, ack.duplicate) == (0, 0, False)
        assert producer.stats.acked_batches == 1
        assert producer.pending == 0
    assert (await read_stream(handle.url))[0] == b"abc"


async def test_an_item_larger_than_max_batch_bytes_goes_alone(handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p", max_batch_bytes=10, linger_ms=10_000) as producer:
        producer.append(b"small")
        producer.append(b"L" * 50)
        producer.append(b"tail")
        await producer.flush()
        assert producer.stats.acked_batches == 3
    assert (await read_stream(handle.url))[0] == b"small" + b"L" * 50 + b"tail"


# -- pipelining -------------------------------------------------------------------------------


async def test_pipelined_batches_resolve_sequence_gaps(
    json_handle: StreamHandle, faults: ReferenceServer
) -> None:
    async with IdempotentProducer(
        json_handle, "p", epoch=0, max_in_flight=5, max_batch_items=1, linger_ms=0
    ) as producer:
        await producer.send(0)  # seq 0 establishes the epoch; then pipelining starts
        # Hold back the next request to arrive: the ones behind it overtake it and get 409.
        faults.inject_fault(json_handle.url, method="POST", delayMs=300, count=1)
        for n in range(1, 30):
            producer.append(n)
        with anyio.fail_after(20):
            await producer.flush()
        assert producer.stats.sequence_gaps > 0
        assert producer.stats.acked_batches == 30
        assert producer.epoch == 0
    assert await read_json(json_handle.url) == list(range(30))


async def test_many_small_pipelined_batches_reach_the_server_in_seq_order(
    json_handle: StreamHandle,
) -> None:
    # Each body goes on the wire only after the one before it, so with 5 in flight the
    # server mostly sees seq order (before this, almost every batch was answered 409).
    # The server reads its connections in no promised order, so an occasional overtake
    # (and the up-to-4 batches behind it) still happens: bound the rate, not to zero.
    async with IdempotentProducer(
        json_handle, "p", max_in_flight=5, max_batch_items=1, linger_ms=0
    ) as producer:
        for n in range(300):
            producer.append(n)
        with anyio.fail_after(30):
            await producer.flush()
        assert producer.stats.acked_batches == 300
        assert producer.stats.sequence_gaps < 300 // 10
    assert await read_json(json_handle.url) == list(range(300))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_large_pipelined_batches_rarely_overtake_each_other(
    json_handle: StreamHandle,
) -> None:
    # 20 batches of 1 MiB keep the server busy: it then takes waiting bodies in no set
    # order, so the producer sends fewer ahead (before this, most batches were sent twice).
    item = b'"' + b"x" * 10_000 + b'"'
    async with IdempotentProducer(json_handle, "p", max_in_flight=5) as producer:
        for _ in range(2000):
            producer.append(item)
        with anyio.fail_after(30):
            await producer.flush()
        assert producer.stats.acked_batches == 20
        assert producer.stats.sequence_gaps < 20 // 2  # most batches were sent twice before
    assert len(await read_json(json_handle.url)) == 2000


async def test_a_rejected_batch_fails_alone_and_later_ones_land_in_order(
    json_handle: StreamHandle,
) -> None:
    async with IdempotentProducer(
        json_handle, "p", epoch=0, max_in_flight=3, max_batch_items=1, linger_ms=10_000
    ) as producer:
        await producer.send(0)
        for n in range(1, 5):
            producer.append(n)
        producer.append("{not json")  # pre-serialised text is sent as given: the server says 400
        for n in range(5, 10):
            producer.append(n)
        with pytest.raises(ProducerFlushError) as raised:
            await producer.flush()
        [failure] = raised.value.failures
        assert failure.error.status == 400
        assert failure.item_count == 1
        # The batches behind the hole moved to a new epoch instead of failing.
        assert producer.epoch == 1
        assert producer.stats.acked_messages == 10
    assert await read_json(json_handle.url) == list(range(10))


# -- epochs -----------------------------------------------------------------------------------


async def _server_append(url: str, epoch: int, data: bytes) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            url,
            content=data,
            headers={
                "content-type": BYTES,
                "producer-id": "p",
                "producer-epoch": str(epoch),
                "producer-seq": "0",
            },
        )
        assert response.status_code == 200


async def test_auto_claim_takes_the_next_epoch(handle: StreamHandle) -> None:
    await _server_append(handle.url, 5, b"five|")
    async with IdempotentProducer(
        handle, "p", epoch=0, auto_claim=True, max_in_flight=3, max_batch_items=1
    ) as producer:
        for n in range(6):
            producer.append(f"{n}|")
        await producer.flush()
        assert producer.epoch == 6
        assert producer.next_seq == 6
    assert (await read_stream(handle.url))[0] == b"five|0|1|2|3|4|5|"


async def test_stale_epoch_without_auto_claim_fails_every_batch(handle: StreamHandle) -> None:
    await _server_append(handle.url, 3, b"three|")
    reported: list[BatchFailure] = []

    async def on_error(error: DurableStreamError, failure: BatchFailure) -> None:
        reported.append(failure)

    producer = IdempotentProducer(handle, "p", epoch=0, max_batch_items=1, on_error=on_error)
    await producer.start()
    with pytest.raises(StaleEpochError) as raised:
        await producer.send(b"first")
    assert raised.value.current_epoch == 3
    with pytest.raises(StaleEpochError):
        producer.append(b"later")  # fenced for good: append refuses at once
    await producer.detach()  # send() raised the fencing: detach does not raise it again
    assert [(f.epoch, f.seq, f.item_count) for f in reported] == [(0, 0, 1)]
    assert (await read_stream(handle.url))[0] == b"three|"


async def test_restart_moves_to_the_next_epoch(handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p", epoch=2) as producer:
        first = await producer.send(b"a")
        await producer.restart()
        assert (producer.epoch, producer.next_seq) == (3, 0)
        second = await producer.send(b"b")
    assert (first.epoch, first.seq) == (2, 0)
    assert (second.epoch, second.seq) == (3, 0)
    # The old epoch is fenced now.
    fenced = IdempotentProducer(handle, "p", epoch=2)
    await fenced.start()
    with pytest.raises(StaleEpochError):
        await fenced.send(b"zombie")
    await fenced.detach()
    assert (await read_stream(handle.url))[0] == b"ab"


async def test_a_second_producer_in_the_same_epoch_is_an_error_not_a_silent_duplicate(
    handle: StreamHandle,
) -> None:
    async with IdempotentProducer(handle, "p", epoch=0) as producer:
        await producer.send(b"first|")
    # A new producer with the same id and epoch: the server holds (0, 0) already.
    async with IdempotentProducer(handle, "p", epoch=0) as producer:
        with pytest.raises(ProducerIdentityError, match="not stored"):
            await producer.send(b"second|")
    assert (await read_stream(handle.url))[0] == b"first|"
    # With auto_claim it takes the next epoch and the item lands, once.
    async with IdempotentProducer(handle, "p", epoch=0, auto_claim=True) as producer:
        ack = await producer.send(b"third|")
    assert (ack.epoch, ack.seq, ack.duplicate) == (1, 0, False)
    assert (await read_stream(handle.url))[0] == b"first|third|"


async def test_producers_with_the_default_epoch_never_collide(handle: StreamHandle) -> None:
    for _ in range(3):  # a new producer each time: same id, same first body
        async with IdempotentProducer(handle, "p") as producer:
            ack = await producer.send(b"once|")
        assert not ack.duplicate
        assert producer.stats.stored_messages == 1
    assert (await read_stream(handle.url))[0] == b"once|" * 3


# -- detach and close -------------------------------------------------------------------------


async def test_detach_flushes_and_leaves_the_stream_open(handle: StreamHandle) -> None:
    producer = IdempotentProducer(handle, "p", linger_ms=10_000)
    await producer.start()
    producer.append(b"kept")
    await producer.detach()
    await producer.detach()  # idempotent
    with pytest.raises(ProducerClosedError):
        producer.append(b"late")
    assert (await read_stream(handle.url)) == (b"kept", False)
    assert not (await handle.head()).closed


async def test_close_with_final_and_again(json_handle: StreamHandle) -> None:
    async with IdempotentProducer(json_handle, "p") as producer:
        producer.append({"n": 1})
        result = await producer.close(final={"type": "done"})
        assert result.final_offset is not None
        assert await producer.close() == result  # closing again returns the first result
        with pytest.raises(ProducerClosedError):
            producer.append({"n": 2})
    assert await read_json(json_handle.url) == [{"n": 1}, {"type": "done"}]
    assert (await read_stream(json_handle.url))[1] is True
    assert (await json_handle.head()).next_offset == result.final_offset


async def test_close_without_final_then_another_producer(handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p") as producer:
        producer.append(b"body")
        result = await producer.close()
    assert await read_stream(handle.url) == (b"body", True)
    assert (await handle.head()).next_offset == result.final_offset
    async with IdempotentProducer(handle, "other") as other:
        with pytest.raises(StreamClosedError) as raised:
            await other.close()
    assert raised.value.final_offset == result.final_offset


async def test_a_closed_stream_fails_every_later_batch(handle: StreamHandle) -> None:
    await handle.close()
    producer = IdempotentProducer(handle, "p", max_batch_items=1, linger_ms=10_000)
    await producer.start()
    producer.append(b"a")
    producer.append(b"b")
    producer.append(b"c")
    with pytest.raises(ProducerFlushError) as raised:
        await producer.flush()
    failures = raised.value.failures
    assert sum(f.item_count for f in failures) == 3
    assert all(isinstance(f.error, StreamClosedError) for f in failures)
    assert producer.stats.acked_messages == 0
    with pytest.raises(StreamClosedError):
        producer.append(b"d")
    await producer.detach()


# -- backpressure, items, cancellation ----------------------------------------------------------


async def test_buffer_full_raises_on_append_and_waits_on_send(handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p", max_buffered_bytes=1000) as producer:
        for _ in range(10):
            producer.append(b"x" * 100)
        assert producer.buffered_bytes == 1000
        with pytest.raises(ProducerBufferFullError):
            producer.append(b"y")
        with anyio.fail_after(10):
            ack = await producer.send(b"z" * 100)  # waits for room, then for its ack
        assert ack.offset is not None
        assert producer.buffered_bytes == 0
        with pytest.raises(ProducerBufferFullError):
            await producer.send(b"w" * 1001)  # can never fit
    assert (await read_stream(handle.url))[0] == b"x" * 1000 + b"z" * 100


class Event(BaseModel):
    kind: str
    n: int


async def test_json_items_models_and_preserialised_text(json_handle: StreamHandle) -> None:
    async with IdempotentProducer(json_handle, "p") as producer:
        producer.append(Event(kind="model", n=1))
        producer.append('{"kind":"text"}')
        producer.append(b'{"kind":"bytes"}')
        producer.append([1, 2])  # a list is one message
        producer.append(None)
        await producer.flush()
        assert producer.stats.acked_batches == 1
    assert await read_json(json_handle.url) == [
        {"kind": "model", "n": 1},
        {"kind": "text"},
        {"kind": "bytes"},
        [1, 2],
        None,
    ]


async def test_cancellation_stops_the_producer_cleanly(
    handle: StreamHandle, faults: ReferenceServer
) -> None:
    faults.inject_fault(handle.url, method="POST", delayMs=5000, count=1)
    with anyio.move_on_after(0.3) as scope:
        async with IdempotentProducer(handle, "p") as producer:
            producer.append(b"stuck")
            await producer.flush()
    assert scope.cancelled_caught
    assert producer.in_flight == 0
    # The producer is stopped and the handle still works.
    with pytest.raises(ProducerClosedError):
        producer.append(b"x")
    faults.clear_faults()
    assert (await handle.head()).content_type == BYTES


async def test_cancelling_the_producer_wakes_its_waiters(
    handle: StreamHandle, faults: ReferenceServer
) -> None:
    faults.inject_fault(handle.url, method="POST", delayMs=5000, count=1)
    producer = IdempotentProducer(handle, "p", linger_ms=0)
    scope = anyio.CancelScope()
    running = anyio.Event()
    errors: list[Exception] = []

    async def run_producer() -> None:
        with scope:
            async with producer:
                running.set()
                await anyio.sleep_forever()

    async def send_one() -> None:
        try:
            await producer.send(b"never acknowledged")
        except ProducerClosedError as error:
            errors.append(error)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_producer)
            await running.wait()
            tasks.start_soon(send_one)
            await anyio.wait_all_tasks_blocked()  # the send is waiting for its ack
            scope.cancel()
        with pytest.raises(ProducerClosedError, match="cancelled"):
            await producer.flush()  # raises instead of waiting forever
    assert len(errors) == 1
    assert "not acknowledged" in str(errors[0])


async def test_leaving_the_block_with_an_error_still_flushes(handle: StreamHandle) -> None:
    async def fail_after_appending() -> None:
        async with IdempotentProducer(handle, "p", linger_ms=10_000) as producer:
            producer.append(b"saved")
            raise KeyError("boom")

    with pytest.raises(KeyError):
        await fail_after_appending()
    assert (await read_stream(handle.url))[0] == b"saved"
