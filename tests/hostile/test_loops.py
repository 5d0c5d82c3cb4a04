"""Unbounded loops: instant empty live answers, heartbeats, offsets going back, retry storms."""

from __future__ import annotations

from tests.hostile.handlers import JSON, reply, stream_headers
from tests.hostile.harness import check, run
from tests.hostile.server import Conn, HostileServer, Request

START = "0000000000000005"


def test_instant_204_long_polls_are_paced() -> None:
    # A long-poll server "times out" at once, every time: the reader must not spin
    # (unpaced, it sent ~900 requests in 3 s; paced 0.1 s doubling to 2 s, 5 in 2 s).
    headers = {**stream_headers(START), "Stream-Cursor": "1"}
    report = run(
        reply(204, headers),
        "read",
        {"how": "batches", "offset": START, "live": "long-poll", "stop_after": 2.0},
        handle={"content_type": "text/plain"},
    )
    check(report, max_requests=10, max_cpu_s=1.5)
    assert report.result["stopped"]


def test_instant_empty_200_long_polls_are_paced() -> None:
    headers = {**stream_headers(START, content_type=JSON), "Stream-Cursor": "1"}
    report = run(
        reply(200, headers, b"[]"),
        "read",
        {"how": "iter_json", "offset": START, "live": True, "stop_after": 2.0},
        handle={"content_type": JSON},
    )
    check(report, max_requests=10, max_cpu_s=1.5)


def test_sse_heartbeats_forever_use_one_connection_and_little_cpu() -> None:
    control = (
        b'event: control\ndata: {"streamNextOffset":"%s","upToDate":true}\n\n' % START.encode()
    )

    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        import asyncio

        while True:
            await conn.send(b"%x\r\n%s\r\n" % (len(control), control))
            await asyncio.sleep(0.005)

    report = run(
        handle,
        "read",
        {"how": "batches", "offset": START, "live": "sse", "stop_after": 2.0},
        handle={"content_type": "text/plain"},
    )
    check(report, max_requests=1, max_cpu_s=1.5)


def test_sse_connections_that_end_at_once_are_backed_off_and_bounded() -> None:
    control = (
        b'event: control\ndata: {"streamNextOffset":"%s","upToDate":true}\n\n' % START.encode()
    )
    report = run(
        reply(200, {"Content-Type": "text/event-stream"}, control),
        "read",
        {"how": "batches", "offset": START, "live": "sse", "stop_after": 3.0},
        handle={"content_type": "text/plain"},
    )
    check(report, max_requests=15, max_cpu_s=1.5)


def test_catch_up_that_never_progresses_is_bounded() -> None:
    report = run(
        reply(200, stream_headers(START, up_to_date=False), b""),
        "read",
        {"how": "batches", "offset": START},
        handle={"retry": {"initial_delay": 0.01, "max_delay": 0.02}},
    )
    check(report, error="DurableStreamError", max_requests=8)


def test_offset_going_backwards_is_a_parse_error() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        # Data, and a next offset lower than the one just read from.
        await conn.respond(200, stream_headers("0000000000000001", up_to_date=False), b"again")
        return True

    report = run(handle, "read", {"how": "batches", "offset": START})
    check(report, error="ParseError", code="PARSE_ERROR", max_requests=1)
    assert "offset" in report.error["message"]


def test_offset_going_backwards_from_start_in_live_mode_is_a_parse_error() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        n = len(server.requests)
        offset = "0000000000000009" if n == 1 else "0000000000000003"
        await conn.respond(200, {**stream_headers(offset), "Stream-Cursor": "1"}, b"d")
        return True

    report = run(handle, "read", {"how": "iter_bytes", "live": "long-poll", "stop_after": 5})
    check(report, error="ParseError", max_requests=2)


def test_retry_after_far_beyond_the_cap_fails_at_once() -> None:
    report = run(reply(503, {"Retry-After": "999999999"}, b"busy"), "call", {"method": "head"})
    check(report, error="ServerError", max_requests=1, max_wall_s=3)
    assert report.error["retry_after"] == 999999999


def test_429_retry_after_beyond_the_cap_fails_at_once() -> None:
    report = run(
        reply(429, {"Retry-After": "120"}, b"slow down"),
        "read",
        {"how": "body"},
        handle={"retry": {"max_retry_after": 10}},
    )
    check(report, error="RateLimitedError", max_requests=1, max_wall_s=3)
    assert report.error["retry_after"] == 120


def test_retry_after_beyond_the_elapsed_budget_fails_at_once() -> None:
    report = run(
        reply(503, {"Retry-After": "5"}, b""),
        "call",
        {"method": "head"},
        handle={"retry": {"max_elapsed": 2}},
    )
    check(report, error="ServerError", max_requests=1, max_wall_s=3)


def test_retry_after_within_the_cap_is_honoured_and_bounded() -> None:
    report = run(
        reply(503, {"Retry-After": "0"}, b""),
        "call",
        {"method": "head"},
        handle={"retry": {"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 4}},
    )
    check(report, error="ServerError", max_requests=4)
    assert report.requests == 4
