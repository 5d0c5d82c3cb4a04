"""Deadlines: servers that dribble, stall or never answer."""

from __future__ import annotations

import asyncio

from tests.hostile.harness import check, run
from tests.hostile.server import Conn, HostileServer, Request

NO_RETRY = {"max_attempts": 1}
# With timeout=1.0 the header deadline is connect + write + read = 3 s.


async def dribble_headers(request: Request, conn: Conn, server: HostileServer) -> bool:
    # Each byte arrives before httpx's per-read timeout, so only an overall deadline ends it.
    for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 10_000:
        await conn.send(bytes([byte]))
        await asyncio.sleep(0.1)
    return False


async def silent(request: Request, conn: Conn, server: HostileServer) -> bool:
    await asyncio.sleep(3600)
    return False


def test_headers_dribbled_one_byte_at_a_time_hit_the_header_deadline() -> None:
    report = run(
        dribble_headers, "call", {"method": "head"}, handle={"timeout": 1.0, "retry": NO_RETRY}
    )
    check(report, error="RequestTimeoutError", code="TIMEOUT", max_requests=1, max_wall_s=4.5)


def test_dribbled_headers_on_a_read_hit_the_header_deadline() -> None:
    report = run(
        dribble_headers, "read", {"how": "body"}, handle={"timeout": 1.0, "retry": NO_RETRY}
    )
    check(report, error="RequestTimeoutError", max_requests=1, max_wall_s=4.5)


def test_dribbled_headers_on_a_long_poll_end_after_the_server_wait_plus_margin() -> None:
    # Live requests get the server's wait (30 s) plus a margin: the guard is above that.
    report = run(
        dribble_headers,
        "read",
        {"how": "batches", "offset": "0000000000000001", "live": "long-poll"},
        handle={"timeout": 1.0, "retry": NO_RETRY, "content_type": "text/plain"},
        guard=80,
    )
    check(report, error="RequestTimeoutError", max_requests=1, max_wall_s=75)


def test_server_that_accepts_and_never_answers_times_out_with_bounded_retries() -> None:
    report = run(
        silent,
        "call",
        {"method": "append", "args": ["x"]},
        handle={
            "timeout": 0.5,
            "content_type": "text/plain",
            "retry": {"max_attempts": 2, "initial_delay": 0.01},
        },
    )
    # A plain append that timed out may have been stored: not retried by default.
    check(report, error="TransportError", max_requests=1, max_wall_s=3)


def test_read_from_a_server_that_never_answers_retries_then_times_out() -> None:
    report = run(
        silent,
        "read",
        {"how": "body"},
        handle={"timeout": 0.5, "retry": {"max_attempts": 3, "initial_delay": 0.01}},
    )
    check(report, error="RequestTimeoutError", max_requests=3, max_wall_s=5)


def test_never_ending_slow_body_of_a_write_is_bounded_by_the_timeout() -> None:
    async def slow_body(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(b"HTTP/1.1 204 No Content\r\nStream-Next-Offset: 1\r\n")
        await asyncio.sleep(3600)
        return False

    report = run(slow_body, "call", {"method": "close"}, handle={"timeout": 0.5, "retry": NO_RETRY})
    check(report, error="RequestTimeoutError", max_requests=1, max_wall_s=3)
