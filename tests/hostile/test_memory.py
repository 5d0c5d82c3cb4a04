"""Unbounded memory: endless, huge, compressed and deeply nested bodies, endless SSE lines.

Each case states its peak-RSS bound: the limit the read holds at most (1x, plus
25 % for allocator slack) plus the harness's fixed allowance for the event loop
and httpx (``DEFAULT_RSS_MIB``).
"""

from __future__ import annotations

import pytest

from tests.hostile.handlers import JSON, MIB, endless, gzip_bomb, reply, stream_headers
from tests.hostile.harness import DEFAULT_RSS_MIB, check, run
from tests.hostile.server import Conn, HostileServer, Request


def bound(limit_mib: float) -> float:
    return limit_mib * 1.25 + DEFAULT_RSS_MIB


def test_endless_body_in_batches_with_default_limit_is_typed_and_near_1x() -> None:
    # Default max_body_bytes (64 MiB): the batch is refused once it passes the limit.
    report = run(endless(b"x" * 65536), "read", {"how": "batches"}, guard=30)
    check(
        report,
        error="ParseError",
        code="PARSE_ERROR",
        max_rss_mib=bound(64),
        max_requests=1,
        max_cpu_s=8,
    )
    assert "max_body_bytes" in report.error["message"]
    assert "iter_bytes" in report.error["message"]


@pytest.mark.parametrize("how", ["body", "text", "json", "batches"])
def test_endless_body_whole_reads_stop_at_the_configured_limit(how: str) -> None:
    report = run(
        endless(b"7" * 65536),
        "read",
        {"how": how},
        handle={"limits": {"max_body_bytes": 8 * MIB}},
    )
    check(report, error="ParseError", max_rss_mib=bound(8), max_requests=1)
    assert "max_body_bytes" in report.error["message"]


def test_body_limit_can_be_raised_per_read() -> None:
    # 12 MiB: over the handle's limit, under the read's own.
    report = run(
        endless(b"x" * 65536, total=12 * MIB, headers=stream_headers()),
        "read",
        {"how": "body", "read_kwargs": {"limits": {"max_body_bytes": 16 * MIB}}},
        handle={"limits": {"max_body_bytes": 4 * MIB}},
    )
    check(report, max_rss_mib=bound(16) + 12, max_requests=1)
    assert report.result["bytes"] == 12 * MIB


def test_body_over_the_limit_accumulated_over_many_responses_is_refused() -> None:
    # body() adds up responses: each one is small, their sum is not.
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        n = len(server.requests)
        await conn.respond(200, stream_headers(f"{n:016d}", up_to_date=False), b"y" * MIB)
        return True

    report = run(handle, "read", {"how": "body"}, handle={"limits": {"max_body_bytes": 8 * MIB}})
    check(report, error="ParseError", max_rss_mib=bound(8), max_requests=10)


def test_large_body_through_iter_bytes_is_read_in_bounded_memory() -> None:
    report = run(endless(b"z" * 65536, total=96 * MIB), "read", {"how": "iter_bytes"}, guard=40)
    check(report, max_rss_mib=DEFAULT_RSS_MIB, max_requests=1, max_cpu_s=10)
    assert report.result["bytes"] == 96 * MIB


@pytest.mark.parametrize("how", ["body", "batches"])
def test_gzip_bomb_whole_read_is_refused_near_1x(how: str) -> None:
    bomb = gzip_bomb(1024)  # 1 GiB of zeros in about 1 MiB
    headers = {**stream_headers(), "Content-Encoding": "gzip"}
    report = run(
        reply(200, headers, bomb),
        "read",
        {"how": how},
        handle={"limits": {"max_body_bytes": 8 * MIB}},
    )
    check(report, error="ParseError", max_rss_mib=bound(8) + 2, max_requests=1)


def test_gzip_bomb_through_iter_bytes_hits_the_ratio_limit_in_bounded_memory() -> None:
    bomb = gzip_bomb(1024)
    headers = {**stream_headers(), "Content-Encoding": "gzip"}
    report = run(reply(200, headers, bomb), "read", {"how": "iter_bytes"})
    check(report, error="ParseError", max_rss_mib=DEFAULT_RSS_MIB, max_requests=1)
    assert "max_decompression_ratio" in report.error["message"]


def test_gzip_body_of_ordinary_text_reads_correctly() -> None:
    import zlib

    data = b"".join(b"line %d of ordinary text\n" % n for n in range(50_000))
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    body = compressor.compress(data) + compressor.flush()
    headers = {**stream_headers(content_type="text/plain"), "Content-Encoding": "gzip"}
    report = run(reply(200, headers, body), "read", {"how": "text"})
    check(report, max_requests=1)
    assert report.result["bytes"] == len(data)


@pytest.mark.parametrize("how", ["iter_json", "batches", "json"])
def test_endless_open_brackets_fail_at_once(how: str) -> None:
    # 500 MB of "[": the depth limit trips on the first chunk, not after buffering.
    report = run(
        endless(b"[" * 65536, headers=stream_headers(content_type=JSON), total=500 * MIB),
        "read",
        {"how": how},
    )
    check(
        report,
        error="ParseError",
        code="PARSE_ERROR",
        max_rss_mib=DEFAULT_RSS_MIB,
        max_requests=1,
        max_cpu_s=2,
    )
    assert "depth" in report.error["message"]


def test_deeply_nested_json_in_a_small_body_is_a_parse_error() -> None:
    body = b"[" + b"[" * 5000 + b"]" * 5000 + b"]"
    report = run(reply(200, stream_headers(content_type=JSON), body), "read", {"how": "json"})
    check(report, error="ParseError", max_requests=1)


def test_never_ending_json_string_stops_at_the_message_limit() -> None:
    report = run(
        endless(b"a" * 65536, headers=stream_headers(content_type=JSON), prefix=b'["'),
        "read",
        {"how": "iter_json"},
        handle={"limits": {"max_message_bytes": 8 * MIB}},
    )
    check(report, error="ParseError", max_rss_mib=bound(8), max_requests=1)
    assert "max_message_bytes" in report.error["message"]


def _sse(*events: bytes) -> bytes:
    return b"".join(events)


def test_endless_sse_line_stops_near_the_line_limit() -> None:
    headers = {"Content-Type": "text/event-stream"}
    report = run(
        endless(b"A" * 65536, headers=headers, prefix=b"event: data\ndata: "),
        "read",
        {"how": "batches", "offset": "0000000000000001", "live": "sse"},
        handle={
            "content_type": "application/octet-stream",
            "limits": {"max_sse_line_bytes": 8 * MIB},
        },
    )
    check(report, error="ParseError", max_rss_mib=bound(8), max_requests=1)
    assert "max_sse_line_bytes" in report.error["message"]


@pytest.mark.parametrize("how", ["json", "iter_json", "batches"])
def test_message_over_the_default_64_mib_is_a_parse_error(how: str) -> None:
    # One 70 MiB JSON string: the README promises a ParseError in every read path.
    message = b'["' + b"m" * (70 * MIB) + b'"]'
    report = run(
        endless(message[:MIB], headers=stream_headers(content_type=JSON), total=len(message)),
        "read",
        {"how": how},
        guard=40,
    )
    check(report, error="ParseError", max_rss_mib=bound(64) + 8, max_requests=1, max_cpu_s=10)


def test_message_over_the_limit_in_sse_json_is_a_parse_error() -> None:
    big = b'event: data\ndata: ["' + b"q" * (9 * MIB) + b'"]\n\n'
    control = b'event: control\ndata: {"streamNextOffset":"0000000000000002"}\n\n'
    headers = {"Content-Type": "text/event-stream"}
    report = run(
        reply(200, headers, big + control),
        "read",
        {"how": "batches", "offset": "0000000000000001", "live": "sse"},
        handle={"content_type": JSON, "limits": {"max_message_bytes": 8 * MIB}},
    )
    check(report, error="ParseError", max_rss_mib=bound(8) + 20, max_requests=1)
