"""Broken HTTP and protocol answers: framing lies, garbage headers, odd statuses."""

from __future__ import annotations

import asyncio

import pytest

from tests.hostile.handlers import JSON, reply, stream_headers
from tests.hostile.harness import check, run
from tests.hostile.server import Conn, HostileServer, Request, head

FAST_RETRY = {"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 3}


def test_truncated_chunked_body_is_a_network_error_after_bounded_retries() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(head(200, {**stream_headers(), "Transfer-Encoding": "chunked"}, None))
        await conn.send(b"10\r\nonly-six")
        return False

    report = run(handle, "read", {"how": "body"}, handle={"retry": FAST_RETRY})
    check(report, error="NetworkError", code="NETWORK_ERROR", max_requests=3)


def test_content_length_longer_than_the_body_is_a_network_error() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(head(200, stream_headers(), 1000) + b"short")
        return False

    report = run(handle, "read", {"how": "iter_bytes"}, handle={"retry": FAST_RETRY})
    check(report, error="NetworkError", max_requests=3)


def test_content_length_shorter_than_the_body_reads_what_it_promised() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(head(200, stream_headers(), 5) + b"hello, and some garbage")
        return False

    report = run(handle, "read", {"how": "body"})
    check(report, max_requests=1)
    assert report.result["bytes"] == 5


def test_invalid_utf8_in_headers_is_handled() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\xff\r\n"
            b"Stream-Next-Offset: 00\xfe\xff1\r\n"
            b"Stream-Up-To-Date: true\r\nContent-Length: 2\r\n\r\nhi"
        )
        return True

    report = run(handle, "read", {"how": "body"})
    if report.ok:
        check(report, max_requests=1)
    else:
        check(report, error="DurableStreamError", max_requests=8)


def test_head_with_garbage_headers_returns_what_it_can() -> None:
    headers = {
        "Content-Type": "text/plain\x01",
        "Stream-Next-Offset": "x" * 4000,
        "Stream-TTL": "forever",
        "Stream-Expires-At": "yesterday-ish",
        "Stream-Closed": "maybe",
    }
    report = run(reply(200, headers), "call", {"method": "head"})
    check(report, max_requests=1)
    assert report.result["ttl"] is None
    assert report.result["closed"] is False


def test_head_with_a_huge_content_length_and_no_body_is_fine() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(head(200, stream_headers(), 10**15))
        return True

    report = run(handle, "call", {"method": "head"})
    check(report, max_requests=1)


def test_huge_response_header_is_a_network_error() -> None:
    report = run(
        reply(200, {**stream_headers(), "X-Big": "b" * 200_000}),
        "call",
        {"method": "head"},
        handle={"retry": FAST_RETRY},
    )
    check(report, error="NetworkError", max_requests=3)


@pytest.mark.parametrize(
    "status_line", [b"HTTP/1.1 abc OK", b"HTTP/9.9 200 OK", b"garbage", b"HTTP/1.1 99 Low"]
)
def test_invalid_status_lines_are_network_errors(status_line: bytes) -> None:
    # h11 accepts "HTTP/9.9" (any d.d); another major version is another message syntax,
    # so the SDK refuses it like the other unparsable answers: a (retried) NetworkError.
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(status_line + b"\r\nContent-Length: 0\r\n\r\n")
        return False

    report = run(handle, "call", {"method": "head"}, handle={"retry": FAST_RETRY})
    check(report, error="NetworkError", code="NETWORK_ERROR", max_requests=3)


def test_connection_closed_before_any_answer_is_bounded() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        return False

    report = run(handle, "read", {"how": "body"}, handle={"retry": FAST_RETRY})
    check(report, error="NetworkError", max_requests=3)


def test_read_without_next_offset_is_a_parse_error() -> None:
    report = run(reply(200, {"Content-Type": "text/plain"}, b"data"), "read", {"how": "body"})
    check(report, error="ParseError", max_requests=1)


def test_json_stream_whose_body_is_not_json_is_a_parse_error() -> None:
    report = run(reply(200, stream_headers(content_type=JSON), b"[1,2,"), "read", {"how": "json"})
    check(report, error="ParseError", code="PARSE_ERROR", max_requests=1)


def test_bad_sse_control_is_a_parse_error() -> None:
    body = b"event: control\ndata: {not json\n\n"
    report = run(
        reply(200, {"Content-Type": "text/event-stream"}, body),
        "read",
        {"how": "batches", "offset": "0000000000000001", "live": "sse"},
        handle={"content_type": "text/plain"},
    )
    check(report, error="ParseError", max_requests=1)


def test_append_to_a_missing_stream_names_append_not_a_hidden_head() -> None:
    report = run(
        reply(404, {"Content-Type": "text/plain"}, b"Stream not found"),
        "call",
        {"method": "append", "args": ["x"]},
    )
    check(report, error="NotFoundError", code="NOT_FOUND", max_requests=2)
    message = report.error["message"]
    assert message.startswith("append"), message
    assert "head failed" not in message


def test_server_400_invalid_json_on_append_has_a_specific_code() -> None:
    report = run(
        reply(400, {"Content-Type": "text/plain"}, b"Invalid JSON"),
        "call",
        {"method": "append", "args": ["{"]},
        handle={"content_type": JSON},
    )
    check(report, error="BadRequestError", max_requests=1)
    assert report.error["code"] != "UNEXPECTED_STATUS"


@pytest.mark.parametrize("method", ["head", "append", "stream", "close"])
def test_handle_used_after_aclose_is_a_usage_error(method: str) -> None:
    report = run(
        reply(200, stream_headers()),
        "call",
        {"method": method, "args": ["x"] if method == "append" else [], "after_aclose": True},
        handle={"content_type": "text/plain"},
    )
    check(report, error="UsageError", max_requests=0)
    assert report.error["code"] != "INTERNAL_ERROR"
    assert report.error["status"] is None
    assert method in report.error["message"]


def test_empty_append_is_local_and_claims_no_status() -> None:
    report = run(
        reply(204, stream_headers()),
        "call",
        {"method": "append_many", "args": [[]]},
        handle={"content_type": "text/plain"},
    )
    check(report, error="EmptyAppendError", code="INVALID_ARGUMENT", max_requests=0)
    assert report.error["status"] is None


def test_close_signature_is_readable() -> None:
    report = run(reply(200, stream_headers()), "help", {"target": "ds.StreamHandle.close"})
    check(report)
    assert "object at 0x" not in report.result


def test_slow_but_legal_server_delivers_everything() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.send(head(200, stream_headers(), 10))
        for byte in b"0123456789":
            await conn.send(bytes([byte]))
            await asyncio.sleep(0.02)
        return True

    report = run(handle, "read", {"how": "body"})
    check(report, max_requests=1)
    assert report.result["bytes"] == 10
