"""IdempotentProducer unit tests: option validation, request building, retry timing and
the answers to 403/409/4xx (respx; no server, no real sleeping)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import respx

import durable_streams._retry
from durable_streams import (
    BadRequestError,
    BatchFailure,
    DurableStreamError,
    EmptyAppendError,
    IdempotentProducer,
    InvalidArgumentError,
    NotFoundError,
    ProducerBufferFullError,
    ProducerError,
    ProducerFlushError,
    ProducerIdentityError,
    ProducerStats,
    RetryPolicy,
    ServerError,
    StaleEpochError,
    StreamHandle,
)

pytestmark = pytest.mark.anyio

URL = "http://streams.test/v1/stream/s"

Reply = Callable[[httpx.Request], httpx.Response]


def accepted(request: httpx.Request) -> httpx.Response:
    """What the server answers to an accepted producer append."""
    seq = int(request.headers["producer-seq"])
    return httpx.Response(
        200,
        headers={
            "stream-next-offset": f"0000000000000000_{seq + 1:016d}",
            "producer-epoch": request.headers["producer-epoch"],
            "producer-seq": str(seq),
        },
    )


def status(code: int, **headers: str) -> Reply:
    return lambda request: httpx.Response(code, headers=headers, text="no")


class Server:
    """A scripted server: replies are taken in order, then every request is accepted."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.requests: list[httpx.Request] = []
        self.script: list[Reply] = []
        router.post(URL).mock(side_effect=self.reply)

    def reply(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return (self.script.pop(0) if self.script else accepted)(request)

    def tuples(self) -> list[tuple[int, int]]:
        return [
            (int(r.headers["producer-epoch"]), int(r.headers["producer-seq"]))
            for r in self.requests
        ]


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(durable_streams._retry, "_sleep", fake_sleep)
    return recorded


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    with respx.mock(assert_all_called=False) as router:
        yield Server(router)


@pytest.fixture
async def handle() -> AsyncIterator[StreamHandle]:
    async with StreamHandle(URL, content_type="application/json") as created:
        yield created


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"producer_id": ""}, "producer_id"),
        ({"producer_id": 7}, "producer_id"),
        ({"epoch": -1}, "epoch"),
        ({"epoch": True}, "epoch"),
        ({"epoch": 2**53}, "epoch"),
        ({"epoch": "latest"}, "epoch"),
        ({"max_batch_bytes": 0}, "max_batch_bytes"),
        ({"max_batch_bytes": 1.5}, "max_batch_bytes"),
        ({"max_batch_items": 0}, "max_batch_items"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_buffered_bytes": 0}, "max_buffered_bytes"),
        ({"linger_ms": -1}, "linger_ms"),
        ({"linger_ms": float("nan")}, "linger_ms"),
        ({"linger_ms": "5"}, "linger_ms"),
        ({"retry": {"max_attempts": 3}}, "retry"),
        ({"on_error": "log"}, "on_error"),
        ({"headers": {"x-token": 5}}, "x-token"),
    ],
)
def test_bad_options_are_rejected_without_io(options: dict[str, Any], field: str) -> None:
    # A sync test: construction needs no event loop and sends nothing.
    handle = StreamHandle(URL)
    kwargs: dict[str, Any] = {"producer_id": "p", **options}
    producer_id = kwargs.pop("producer_id")
    with pytest.raises(InvalidArgumentError) as raised:
        IdempotentProducer(handle, producer_id, **kwargs)
    assert raised.value.field == field
    assert field in str(raised.value)


def test_defaults_and_state_before_start() -> None:
    producer = IdempotentProducer(StreamHandle(URL), "p", epoch=4)
    assert (producer.epoch, producer.next_seq, producer.pending, producer.in_flight) == (4, 0, 0, 0)
    assert producer.stats == ProducerStats(0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ProducerError, match="not started"):
        producer.append(b"x")


async def test_repr_hides_credentials() -> None:
    handle = StreamHandle(URL + "?token=s3cret", headers={"authorization": "Bearer s3cret"})
    producer = IdempotentProducer(handle, "p", headers={"authorization": "Bearer s3cret"})
    assert "s3cret" not in repr(producer)
    await handle.aclose()


async def test_encoding_errors_surface_at_append_and_close(
    server: Server, handle: StreamHandle
) -> None:
    text_handle = StreamHandle(URL, content_type="text/plain")
    async with text_handle, IdempotentProducer(text_handle, "p") as producer:
        with pytest.raises(InvalidArgumentError):
            producer.append({"a": 1})  # byte streams take bytes or str
        with pytest.raises(EmptyAppendError):
            producer.append(b"")
        with pytest.raises(EmptyAppendError):
            await producer.send("")
    async with IdempotentProducer(handle, "p") as producer:
        with pytest.raises(InvalidArgumentError):
            producer.append(object())  # not JSON-serialisable
        with pytest.raises(InvalidArgumentError):
            await producer.close(final=object())
    assert server.requests == []


async def test_appends_cut_batches_and_fill_the_buffer_exactly_at_the_limits(
    server: Server, handle: StreamHandle
) -> None:
    # A model of the documented rules, checked item by item against the producer
    # (most appends take its fast path, so this pins that path to the rules).
    max_batch, max_buffered = 64, 3000
    rng = random.Random(3)
    cut: list[list[bytes]] = []
    open_items: list[bytes] = []
    open_bytes = queued = 1  # a JSON body is "[" + items joined by "," + "]"
    queued = 0
    async with IdempotentProducer(
        handle, "p", max_batch_bytes=max_batch, max_buffered_bytes=max_buffered, linger_ms=10_000
    ) as producer:
        for n in range(300):
            item = b'"%d%s"' % (n, b"x" * rng.randint(0, 30))
            cost = len(item) + 1
            if queued + open_bytes + cost > max_buffered:
                with pytest.raises(ProducerBufferFullError):
                    producer.append(item)
                continue
            if open_bytes + cost > max_batch and open_items:
                cut.append(open_items)
                queued += open_bytes
                open_items, open_bytes = [], 1
            producer.append(item)
            open_items.append(item)
            open_bytes += cost
            if open_bytes >= max_batch:
                cut.append(open_items)
                queued += open_bytes
                open_items, open_bytes = [], 1
            assert producer.buffered_bytes == queued + (open_bytes if open_items else 0)
        assert queued + open_bytes > max_buffered - 40  # the buffer did fill up
        await producer.flush()
    expected = [b"[" + b",".join(items) + b"]" for items in [*cut, open_items] if items]
    assert [request.content for request in server.requests] == expected


async def test_the_buffer_limit_is_exact(server: Server, handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p", max_buffered_bytes=100) as producer:
        for n in range(8):
            producer.append(b'"%08d"' % n)  # 10 bytes + a separator each
        assert producer.buffered_bytes == 89  # with the body's "[" and "]"
        with pytest.raises(ProducerBufferFullError):
            producer.append(b'"123456789"')  # 101 bytes
        producer.append(b'"12345678"')  # exactly 100
        assert producer.buffered_bytes == 100
        with pytest.raises(ProducerBufferFullError):
            producer.append(b"1")


async def test_append_raises_as_soon_as_the_stream_is_gone(
    server: Server, handle: StreamHandle
) -> None:
    server.script = [status(404)]
    outcomes: list[type[BaseException] | None] = []  # of the append in each on_error call
    reported = anyio.Event()

    def on_error(error: DurableStreamError, failure: BatchFailure) -> None:
        # The first call runs before the sender wakes up, while the open batch holds b'"b"'.
        try:
            producer.append(b'"c"')
            outcomes.append(None)
        except DurableStreamError as exc:
            outcomes.append(type(exc))
        reported.set()

    producer = IdempotentProducer(
        handle, "p", max_batch_bytes=10, linger_ms=10_000, on_error=on_error
    )
    async with producer:
        producer.append(b'"aaaaaaaaaa"')  # too big for a batch of 10 bytes: sent at once
        producer.append(b'"b"')
        with anyio.fail_after(5):
            await reported.wait()
        assert outcomes[0] is NotFoundError
        with pytest.raises(ProducerFlushError):
            await producer.flush()
    assert len(server.requests) == 1


# -- request building ------------------------------------------------------------------------------


async def test_requests_carry_producer_user_and_protocol_headers(server: Server) -> None:
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return f"t{calls}"

    async with (
        StreamHandle(
            URL, content_type="application/json", headers={"x-app": "shop"}, params={"tenant": "a"}
        ) as handle,
        IdempotentProducer(
            handle,
            "svc",
            epoch=3,
            linger_ms=0,
            headers={"x-token": token, "producer-seq": "999"},
            params={"region": "eu"},
        ) as producer,
    ):
        await producer.send({"n": 1})
        await producer.send("[1,2]")
    first, second = server.requests
    assert first.headers["producer-id"] == "svc"
    assert (first.headers["producer-epoch"], first.headers["producer-seq"]) == ("3", "0")
    assert second.headers["producer-seq"] == "1"  # protocol headers win over user headers
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-app"] == "shop"
    assert (first.headers["x-token"], second.headers["x-token"]) == ("t1", "t2")
    assert first.url.params["tenant"] == "a"
    assert first.url.params["region"] == "eu"
    assert first.content == b'[{"n":1}]'
    assert second.content == b"[[1,2]]"  # str is pre-serialised JSON: sent as given


async def test_send_returns_the_ack_and_204_is_a_duplicate(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    server.script = [
        accepted,
        status(503),  # the outcome is unknown: the resend may find it stored
        status(204, **{"producer-epoch": "0", "producer-seq": "1"}),
    ]
    async with IdempotentProducer(handle, "p", epoch=0, linger_ms=0) as producer:
        first = await producer.send(1)
        second = await producer.send(2)
    assert (first.offset, first.duplicate, first.epoch, first.seq) == (
        "0000000000000000_0000000000000001",
        False,
        0,
        0,
    )
    assert (second.offset, second.duplicate, second.seq) == (None, True, 1)
    assert producer.stats.duplicate_batches == 1
    assert (producer.stats.stored_messages, producer.stats.duplicate_messages) == (1, 1)


async def test_a_204_to_a_first_attempt_is_an_identity_conflict_not_a_duplicate(
    server: Server, handle: StreamHandle, caplog: pytest.LogCaptureFixture
) -> None:
    # Another incarnation already holds (0, 0): this batch was not stored.
    server.script = [status(204, **{"producer-epoch": "0", "producer-seq": "41"})]
    with caplog.at_level(logging.WARNING, logger="durable_streams"):
        async with IdempotentProducer(handle, "p", epoch=0, linger_ms=0) as producer:
            with pytest.raises(ProducerIdentityError, match="one live writer") as raised:
                await producer.send(1)
            assert (raised.value.epoch, raised.value.seq) == (0, 0)
            with pytest.raises(ProducerIdentityError):
                producer.append(2)  # nothing more is sent under a shared identity
            stats = producer.stats
    assert (stats.acked_messages, stats.duplicate_messages, stats.failed_messages) == (0, 0, 1)
    assert stats.identity_conflicts == 1
    assert len(server.requests) == 1
    assert "identity conflict" in caplog.text


async def test_a_replaying_producer_takes_a_204_to_a_first_attempt_as_a_duplicate(
    server: Server, handle: StreamHandle
) -> None:
    # identity="replay": this run re-sends what an earlier run stored under epoch 0.
    server.script = [
        status(204, **{"producer-epoch": "0", "producer-seq": "0"}),
        status(204, **{"producer-epoch": "0", "producer-seq": "3"}),
    ]
    async with IdempotentProducer(handle, "p", epoch=0, linger_ms=0, identity="replay") as producer:
        first = await producer.send(1)
        second = await producer.send(2)
    assert (first.duplicate, first.seq, second.duplicate, second.seq) == (True, 0, True, 1)
    stats = producer.stats
    assert (stats.duplicate_messages, stats.failed_messages, stats.identity_conflicts) == (2, 0, 0)


async def test_identity_is_exclusive_or_replay(handle: StreamHandle) -> None:
    with pytest.raises(InvalidArgumentError, match="identity"):
        IdempotentProducer(handle, "p", identity="shared")  # type: ignore[arg-type]


async def test_a_204_to_a_first_attempt_with_auto_claim_moves_to_a_fresh_epoch(
    server: Server, handle: StreamHandle, caplog: pytest.LogCaptureFixture
) -> None:
    server.script = [status(204, **{"producer-epoch": "0", "producer-seq": "41"})]
    with caplog.at_level(logging.INFO, logger="durable_streams"):
        async with IdempotentProducer(handle, "p", epoch=0, auto_claim=True) as producer:
            producer.append(1)
            ack = await producer.send(2)
    assert (ack.epoch, ack.seq, ack.duplicate) == (1, 0, False)
    assert server.tuples() == [(0, 0), (1, 0)]
    assert producer.stats.stored_messages == 2
    assert producer.stats.acked_messages == 2
    # A conflict the producer resolves by claiming a fresh epoch is news, not a problem.
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    assert "identity conflict, claiming a fresh epoch" in caplog.records[0].message
    assert "epoch 0 -> 1 (claimed after an identity conflict)" in caplog.records[1].message


async def test_a_seq_echo_beyond_what_was_sent_is_an_identity_conflict(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    # A resend after an ambiguous failure may be a real duplicate, but the server
    # holds seq 9 of this epoch and this producer only ever sent seq 0.
    server.script = [status(500), status(204, **{"producer-epoch": "0", "producer-seq": "9"})]
    async with IdempotentProducer(handle, "p", epoch=0) as producer:
        with pytest.raises(ProducerIdentityError, match="beyond"):
            await producer.send(1)


async def test_a_200_whose_seq_echo_differs_is_stored_but_stops_the_producer(
    server: Server, handle: StreamHandle
) -> None:
    def echo_other_seq(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"producer-epoch": "0", "producer-seq": "3"})

    server.script = [echo_other_seq]
    async with IdempotentProducer(handle, "p", epoch=0, linger_ms=0) as producer:
        ack = await producer.send(1)  # the server said it stored it: acknowledged
        assert not ack.duplicate
        with pytest.raises(ProducerIdentityError, match="echoed seq 3"):
            producer.append(2)
        assert producer.stats.identity_conflicts == 1


async def test_a_403_after_writing_with_auto_claim_stops_instead_of_fighting(
    server: Server, handle: StreamHandle
) -> None:
    server.script = [accepted, status(403, **{"producer-epoch": "5"})]
    async with IdempotentProducer(handle, "p", epoch=0, auto_claim=True, linger_ms=0) as producer:
        await producer.send(1)
        with pytest.raises(ProducerIdentityError) as raised:
            await producer.send(2)  # a newer writer took over: this one is the zombie
        assert isinstance(raised.value.__cause__, StaleEpochError)
    assert server.tuples() == [(0, 0), (0, 1)]


async def test_claims_before_the_first_ack_are_bounded(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    server.script = [status(403, **{"producer-epoch": str(n)}) for n in (5, 6, 7, 8, 9)]
    async with IdempotentProducer(handle, "p", epoch=0, auto_claim=True) as producer:
        with pytest.raises(ProducerIdentityError, match="still contested"):
            await producer.send(1)
    assert server.tuples() == [(0, 0), (6, 0), (7, 0), (8, 0)]
    assert slept == [0.05, 0.1]  # a growing pause before the 2nd and 3rd claims


def test_the_auto_epoch_is_the_clock_in_ms_and_grows_within_a_process() -> None:
    before = time.time_ns() // 1_000_000
    first = IdempotentProducer(StreamHandle(URL), "p")
    second = IdempotentProducer(StreamHandle(URL), "p")
    assert before <= first.epoch < second.epoch <= 2**53 - 1


# -- retries -------------------------------------------------------------------------------------


async def test_retry_resends_the_same_tuple_and_body_after_retry_after(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    server.script = [status(503, **{"retry-after": "2"}), status(500)]
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.05)
    async with IdempotentProducer(handle, "p", epoch=0, retry=policy) as producer:
        producer.append({"a": 1})
        producer.append({"b": 2})
        await producer.flush()
        assert producer.stats.retries == 2
    assert server.tuples() == [(0, 0)] * 3
    assert {r.content for r in server.requests} == {b'[{"a":1},{"b":2}]'}
    assert slept[0] >= 2.0  # Retry-After is a floor
    assert slept[1] <= 0.05


async def test_a_batch_that_fails_for_good_is_reported_and_the_next_one_moves_on(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    server.script = [status(500)] * 3
    reported: list[tuple[DurableStreamError, BatchFailure]] = []
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.01, max_attempts=3)
    async with IdempotentProducer(
        handle,
        "p",
        epoch=0,
        retry=policy,
        on_error=lambda error, failure: reported.append((error, failure)),
    ) as producer:
        producer.append(1)
        with pytest.raises(ProducerFlushError) as raised:
            await producer.flush()
        [failure] = raised.value.failures
        assert isinstance(failure.error, ServerError)
        assert (failure.epoch, failure.seq, failure.item_count) == (0, 0, 1)
        assert reported == [(failure.error, failure)]
        # The failed seq may or may not be stored: later batches go to a fresh epoch.
        ack = await producer.send(2)
        assert (ack.epoch, ack.seq) == (1, 0)
        await producer.flush()  # failures were reported once
    assert len(slept) == 2


async def test_a_rejected_batch_is_not_retried(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    server.script = [status(400)]
    async with IdempotentProducer(handle, "p") as producer:
        with pytest.raises(BadRequestError):
            await producer.send("not json")
        assert producer.stats.failed_batches == 1
        await producer.flush()  # send() already raised it: reported once, not again here
    assert slept == []
    assert len(server.requests) == 1


async def test_a_cancelled_send_leaves_its_failure_to_flush(handle: StreamHandle) -> None:
    requested, answer = anyio.Event(), anyio.Event()

    async def reply(request: httpx.Request) -> httpx.Response:
        requested.set()
        await answer.wait()
        return httpx.Response(400, text="no")

    with respx.mock() as router:
        router.post(URL).mock(side_effect=reply)
        async with IdempotentProducer(handle, "p", linger_ms=0) as producer:
            with anyio.CancelScope() as scope:  # a caller's timeout, say

                async def cancel_once_sent() -> None:
                    await requested.wait()
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_once_sent)
                    await producer.send(b'"x"')
            assert scope.cancelled_caught
            answer.set()
            # send() raised nothing, so the failure must not be lost.
            with pytest.raises(ProducerFlushError) as raised:
                await producer.flush()
            assert [f.item_count for f in raised.value.failures] == [1]


async def test_flush_lists_a_failed_batch_that_also_held_fire_and_forget_items(
    server: Server, handle: StreamHandle
) -> None:
    server.script = [status(400)]
    async with IdempotentProducer(handle, "p", linger_ms=20) as producer:
        producer.append(b'"unawaited"')  # no await before send(): both wait in one open batch
        with pytest.raises(BadRequestError):
            await producer.send(b'"awaited"')  # same batch: the flush below still lists it
        with pytest.raises(ProducerFlushError) as raised:
            await producer.flush()
        [failure] = raised.value.failures
        assert failure.item_count == 2
    assert len(server.requests) == 1


# -- epochs and gaps -----------------------------------------------------------------------------


async def test_stale_epoch_without_auto_claim_is_final(
    server: Server, handle: StreamHandle
) -> None:
    server.script = [status(403, **{"producer-epoch": "7"})]
    async with IdempotentProducer(handle, "p") as producer:
        with pytest.raises(StaleEpochError) as raised:
            await producer.send(1)
        assert raised.value.current_epoch == 7
        with pytest.raises(StaleEpochError):
            producer.append(2)
        await producer.flush()  # the fencing was raised by send(): nothing left to list
    assert len(server.requests) == 1


async def test_a_deleted_stream_fails_every_later_batch_without_requests(
    server: Server, handle: StreamHandle
) -> None:
    server.script = [status(404)]
    async with IdempotentProducer(handle, "p", max_batch_items=1, linger_ms=10_000) as producer:
        producer.append(1)
        producer.append(2)
        producer.append(3)
        with pytest.raises(ProducerFlushError) as raised:
            await producer.flush()
        assert [type(f.error) for f in raised.value.failures] == [NotFoundError] * 3
        with pytest.raises(NotFoundError):
            producer.append(4)
    assert len(server.requests) == 1


async def test_auto_claim_moves_to_the_server_epoch_plus_one(
    server: Server, handle: StreamHandle
) -> None:
    server.script = [status(403, **{"producer-epoch": "7"})]
    async with IdempotentProducer(handle, "p", epoch=0, auto_claim=True) as producer:
        ack = await producer.send(1)
    assert (ack.epoch, ack.seq) == (8, 0)
    assert server.tuples() == [(0, 0), (8, 0)]
    assert server.requests[0].content == server.requests[1].content


async def test_a_gap_with_nothing_earlier_pending_starts_a_new_epoch(
    server: Server, handle: StreamHandle
) -> None:
    gap = status(409, **{"producer-expected-seq": "0", "producer-received-seq": "1"})
    server.script = [accepted, gap, gap]  # the server forgot the producer after seq 0
    async with IdempotentProducer(handle, "p", epoch=0, linger_ms=0) as producer:
        await producer.send(1)
        ack = await producer.send(2)
        assert producer.stats.sequence_gaps == 2
        assert producer.stats.failed_batches == 0
    assert (ack.epoch, ack.seq) == (1, 0)
    assert server.tuples() == [(0, 0), (0, 1), (0, 1), (1, 0)]


async def test_on_error_exceptions_are_logged_not_raised(
    server: Server, handle: StreamHandle, caplog: pytest.LogCaptureFixture
) -> None:
    server.script = [status(400)]

    async def broken(error: DurableStreamError, failure: BatchFailure) -> None:
        raise RuntimeError("handler bug")

    async with IdempotentProducer(handle, "p", on_error=broken) as producer:
        producer.append(1)
        with (
            caplog.at_level(logging.ERROR, logger="durable_streams"),
            pytest.raises(ProducerFlushError),
        ):
            await producer.flush()
    assert "on_error raised" in caplog.text


async def test_start_twice_is_an_error(server: Server, handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p") as producer:
        with pytest.raises(ProducerError, match="already started"):
            await producer.start()


# -- groups: append_many / send_many ------------------------------------------------------------


async def test_a_group_travels_in_one_request_even_across_the_batch_limit(
    server: Server, handle: StreamHandle
) -> None:
    async with IdempotentProducer(
        handle, "p", epoch=1, max_batch_bytes=50, linger_ms=0
    ) as producer:
        producer.append({"n": 0})  # [{"n":0}] is 9 bytes; the group needs 45 more
        ack = await producer.send_many([{"tx": 1, "i": i} for i in range(3)])
        producer.append_many(['{"tx":2,"i":0}', b'{"tx":2,"i":1}'])
        await producer.flush()
    bodies = [json.loads(request.content) for request in server.requests]
    assert bodies == [
        [{"n": 0}],
        [{"tx": 1, "i": 0}, {"tx": 1, "i": 1}, {"tx": 1, "i": 2}],
        [{"tx": 2, "i": 0}, {"tx": 2, "i": 1}],
    ]
    assert ack.seq == 1
    assert producer.stats.stored_messages == 6


async def test_a_bad_group_queues_nothing(server: Server, handle: StreamHandle) -> None:
    async with IdempotentProducer(handle, "p", epoch=1, max_batch_bytes=100) as producer:
        producer.append({"n": 0})
        with pytest.raises(InvalidArgumentError, match="item 1 of the group is not valid JSON"):
            producer.append_many([{"ok": 1}, "{not json", {"ok": 3}])
        with pytest.raises(InvalidArgumentError, match="NaN"):
            producer.append_many(["NaN"])
        with pytest.raises(InvalidArgumentError, match="one batch"):
            producer.append_many([{"pad": "x" * 60}, {"pad": "y" * 60}])
        with pytest.raises(InvalidArgumentError, match="iterable"):
            producer.append_many("abc")  # a str is one item, not a group
        with pytest.raises(InvalidArgumentError, match="not dict"):
            producer.append_many({"a": 1})  # a mapping too: not its keys
        with pytest.raises(EmptyAppendError):
            producer.append_many([])
        assert producer.pending == 1
    assert [json.loads(request.content) for request in server.requests] == [[{"n": 0}]]


async def test_a_retried_group_is_resent_whole_under_its_tuple(
    server: Server, handle: StreamHandle, slept: list[float]
) -> None:
    server.script = [status(503), status(503)]
    async with IdempotentProducer(handle, "p", epoch=1, max_batch_bytes=100) as producer:
        await producer.send_many([{"i": i} for i in range(4)])
    assert server.tuples() == [(1, 0)] * 3
    assert {request.content for request in server.requests} == {
        b'[{"i":0},{"i":1},{"i":2},{"i":3}]'
    }
