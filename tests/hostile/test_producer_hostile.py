"""Hostile answers to an IdempotentProducer: nonsensical gaps and endless fencing.

These cover the producer (owned by the producer refactor): every loop must be
bounded and backed off, impossible producer headers are a protocol error.
"""

from __future__ import annotations

from tests.hostile.handlers import JSON
from tests.hostile.harness import check, run
from tests.hostile.server import Conn, HostileServer, Request

FAST = {"initial_delay": 0.01, "max_delay": 0.05}


def _gap(expected: str) -> object:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        if request.method == "HEAD":
            await conn.respond(200, {"Content-Type": JSON, "Stream-Next-Offset": "1"})
            return True
        await conn.respond(
            409,
            {
                "Producer-Expected-Seq": expected,
                "Producer-Received-Seq": request.headers.get("producer-seq", "0"),
            },
            b"gap",
        )
        return True

    return handle


def _run_producer(handler: object, **producer: object):  # type: ignore[no-untyped-def]
    return run(
        handler,  # type: ignore[arg-type]
        "producer",
        {"items": 3, "producer": producer},
        handle={"content_type": JSON, "retry": FAST},
        guard=20,
    )


def test_negative_expected_seq_is_a_protocol_error_not_a_gap() -> None:
    # The producer's flush error aggregates the batch failures and takes their code.
    report = _run_producer(_gap("-5"))
    check(report, error="ProducerFlushError", code="PARSE_ERROR", max_requests=3, max_wall_s=5)


def test_expected_seq_ahead_of_what_was_sent_is_a_protocol_error() -> None:
    report = _run_producer(_gap("1000"))
    check(report, error="ProducerFlushError", code="PARSE_ERROR", max_requests=3, max_wall_s=5)


def test_expected_seq_above_2_53_is_a_protocol_error() -> None:
    report = _run_producer(_gap(str(2**60)))
    check(report, error="ProducerFlushError", code="PARSE_ERROR", max_requests=3, max_wall_s=5)


def test_endless_sane_gaps_are_bounded_and_fail_typed() -> None:
    # Always "expected 0": the producer re-sends from a new epoch a bounded number of times.
    report = _run_producer(_gap("0"))
    check(report, error="ProducerError", max_requests=20, max_wall_s=10)
    assert (
        report.error["cause"] is not None or "ProducerSequenceGapError" in report.error["message"]
    )


def test_stale_epoch_on_every_attempt_with_auto_claim_is_bounded() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        epoch = int(request.headers.get("producer-epoch", "0"))
        await conn.respond(403, {"Producer-Epoch": str(epoch + 1)}, b"stale epoch")
        return True

    report = _run_producer(handle, auto_claim=True)
    check(report, error="DurableStreamError", max_requests=10, max_wall_s=10)
    assert "StaleEpochError" in report.error["chain"] or report.error["type"] == "StaleEpochError"


def test_stale_epoch_with_an_impossible_epoch_is_a_protocol_error() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.respond(403, {"Producer-Epoch": str(2**60)}, b"stale epoch")
        return True

    report = _run_producer(handle, auto_claim=True)
    check(report, error="DurableStreamError", max_requests=3, max_wall_s=5)
