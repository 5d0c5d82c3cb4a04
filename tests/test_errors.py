"""Error mapping, redaction and escaping (no network)."""

from __future__ import annotations

import email.utils
import json
import time

import httpx
import pytest

from durable_streams import (
    AckOffsetError,
    AlreadyClaimedError,
    BadRequestError,
    ConflictError,
    DurableStreamError,
    FencedError,
    ForbiddenError,
    GoneError,
    InvalidOffsetError,
    InvalidSubscriptionRequestError,
    NetworkError,
    NoPendingWorkError,
    NotFoundError,
    NotSupportedError,
    PayloadTooLargeError,
    ProducerSequenceGapError,
    RateLimitedError,
    RequestTimeoutError,
    SequenceConflictError,
    ServerError,
    StaleEpochError,
    StatusError,
    StreamClosedError,
    StreamConfigMismatchError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    UnauthorizedError,
    WakeTokenError,
    WakeTokenExpiredError,
    WebhookUrlRejectedError,
)
from durable_streams._errors import (
    error_for_control_response,
    error_for_exception,
    error_for_response,
    parse_retry_after,
)
from durable_streams._redact import REDACTED, excerpt, redact_headers, redact_url

URL = "https://user:hunter2@example.com/v1/stream/s?offset=-1&token=abc123&live=sse"


def response(
    status: int,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    method: str = "POST",
) -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body, request=httpx.Request(method, URL))


def error(status: int, **kwargs: object) -> StatusError:
    headers = kwargs.pop("headers", None)
    body = kwargs.pop("body", b"oops")
    method = str(kwargs.pop("method", "POST"))
    assert isinstance(body, bytes)
    resp = response(status, headers=headers, body=body, method=method)  # type: ignore[arg-type]
    return error_for_response(resp, operation="append", body=body, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (400, BadRequestError, "UNEXPECTED_STATUS"),
        (401, UnauthorizedError, "UNEXPECTED_STATUS"),
        (403, ForbiddenError, "UNEXPECTED_STATUS"),
        (404, NotFoundError, "NOT_FOUND"),
        (405, NotSupportedError, "NOT_SUPPORTED"),
        (409, StreamConfigMismatchError, "CONFLICT"),
        (410, GoneError, "UNEXPECTED_STATUS"),
        (413, PayloadTooLargeError, "UNEXPECTED_STATUS"),
        (429, RateLimitedError, "UNEXPECTED_STATUS"),
        (500, ServerError, "UNEXPECTED_STATUS"),
        (501, NotSupportedError, "NOT_SUPPORTED"),
        (502, ServerError, "UNEXPECTED_STATUS"),
        (503, ServerError, "UNEXPECTED_STATUS"),
        (504, ServerError, "UNEXPECTED_STATUS"),
        (418, StatusError, "UNEXPECTED_STATUS"),
    ],
)
def test_every_status_maps_to_its_class(status: int, cls: type[StatusError], code: str) -> None:
    exc = error(status)
    assert type(exc) is cls
    assert exc.code == code
    assert exc.status == status
    assert exc.body == "oops"
    assert exc.url is not None
    assert "hunter2" not in exc.url
    assert "abc123" not in exc.url
    assert str(status) in str(exc)


def test_409_with_stream_closed_is_stream_closed_with_final_offset() -> None:
    exc = error(409, headers={"Stream-Closed": "true", "Stream-Next-Offset": "0000_0042"})
    assert isinstance(exc, StreamClosedError)
    assert exc.final_offset == "0000_0042"
    assert exc.code == "STREAM_CLOSED"


def test_409_stream_closed_needs_lowercase_true_semantics() -> None:
    assert isinstance(error(409, headers={"Stream-Closed": "TRUE"}), StreamClosedError)
    assert not isinstance(error(409, headers={"Stream-Closed": "yes"}), StreamClosedError)


def test_409_with_expected_seq_is_a_producer_gap() -> None:
    exc = error(409, headers={"Producer-Expected-Seq": "3", "Producer-Received-Seq": "5"})
    assert isinstance(exc, ProducerSequenceGapError)
    assert (exc.expected_seq, exc.received_seq) == (3, 5)


def test_409_after_sending_stream_seq_is_a_sequence_conflict() -> None:
    exc = error(409, sent_stream_seq=True)
    assert isinstance(exc, SequenceConflictError)
    assert exc.code == "SEQUENCE_CONFLICT"
    assert isinstance(error(409), StreamConfigMismatchError)


def test_409_to_create_is_always_a_config_mismatch() -> None:
    exc = error(409, headers={"Stream-Closed": "true"}, is_create=True, method="PUT")
    assert type(exc) is StreamConfigMismatchError
    assert isinstance(exc, ConflictError)


def test_403_with_producer_epoch_is_stale_epoch() -> None:
    exc = error(403, headers={"Producer-Epoch": "7"})
    assert isinstance(exc, StaleEpochError)
    assert exc.current_epoch == 7
    assert type(error(403, headers={"Producer-Epoch": "x"})) is ForbiddenError


def test_400_on_a_read_about_the_offset_is_invalid_offset() -> None:
    exc = error(400, body=b"Invalid offset format", is_read=True, method="GET")
    assert isinstance(exc, InvalidOffsetError)
    assert exc.code == "INVALID_OFFSET"
    assert type(error(400, body=b"Invalid offset format")) is BadRequestError


def test_429_exposes_retry_after() -> None:
    assert error(429, headers={"Retry-After": "12"}).retry_after == 12.0
    assert error(429).retry_after is None


def test_response_headers_are_redacted() -> None:
    exc = error(
        500,
        headers={
            "Set-Cookie": "session=s3cret",
            "X-Api-Key": "k3y",
            "Authorization": "Bearer t0ken",
            "Content-Type": "text/plain",
        },
    )
    assert exc.headers is not None
    assert exc.headers["set-cookie"] == REDACTED
    assert exc.headers["x-api-key"] == REDACTED
    assert exc.headers["authorization"] == REDACTED
    assert exc.headers["content-type"] == "text/plain"
    rendered = f"{exc} {exc!r} {exc.headers}"
    for secret in ("s3cret", "k3y", "t0ken", "hunter2", "abc123"):
        assert secret not in rendered


def test_untrusted_body_is_escaped_and_clipped() -> None:
    hostile = b"\x1b[31mred\r\nINFO fake log line\x00" + b"x" * 500
    exc = error(400, body=hostile)
    assert exc.body is not None
    for raw in ("\x1b", "\r", "\n", "\x00"):
        assert raw not in str(exc)
        assert raw not in exc.body
    assert "\\x1b" in exc.body
    assert "\\r\\n" in exc.body
    assert exc.body.endswith("…")
    assert len(exc.body) < 260


def test_excerpt_keeps_short_text() -> None:
    assert excerpt("fine") == "fine"
    assert excerpt("a\tb") == "a\\tb"


def test_redact_url() -> None:
    redacted = redact_url(URL)
    assert redacted == (
        f"https://{REDACTED}:{REDACTED}@example.com/v1/stream/s?offset=-1&token={REDACTED}&live=sse"
    )
    assert redact_url("https://t0ken@example.com/s") == f"https://{REDACTED}@example.com/s"
    assert redact_url("http://h/s?cursor=9&api_key=zz") == f"http://h/s?cursor=9&api_key={REDACTED}"
    assert redact_url("http://h/s#frag") == "http://h/s"
    assert redact_url(httpx.URL("http://a:b@h/s")) == f"http://{REDACTED}:{REDACTED}@h/s"
    assert "ghp_T0KEN" not in redact_url("https://ghp_T0KEN:x-oauth-basic@h/s")
    assert redact_url("http://[::1/s") == "<invalid URL>"


def test_redact_headers_by_name() -> None:
    headers = redact_headers({"Cookie": "c", "X-Auth-Token": "t", "Stream-Next-Offset": "1"})
    assert headers == {"cookie": REDACTED, "x-auth-token": REDACTED, "stream-next-offset": "1"}


def test_base_error_redacts_its_url_and_repr() -> None:
    exc = DurableStreamError("boom", url=URL, headers={"authorization": "Bearer x"})
    assert "hunter2" not in repr(exc)
    assert "abc123" not in str(exc)
    assert exc.headers == {"authorization": REDACTED}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 0 ", 0.0),
        ("", None),
        ("-3", None),
        ("1.5", None),
        ("soon", None),
        ("²", None),
        (None, None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = parse_retry_after(future)
    assert seconds is not None
    assert 25 <= seconds <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 -0000") is not None


def test_transport_exceptions_become_typed_with_cause() -> None:
    timeout = httpx.ReadTimeout("slow")
    exc = error_for_exception(timeout, operation="read", url=URL)
    assert isinstance(exc, RequestTimeoutError)
    assert exc.code == "TIMEOUT"
    assert exc.__cause__ is timeout
    reset = httpx.RemoteProtocolError("peer closed")
    exc = error_for_exception(reset, operation="append", url=URL)
    assert type(exc) is NetworkError
    assert exc.code == "NETWORK_ERROR"
    assert exc.__cause__ is reset
    assert "hunter2" not in str(exc)


# -- subscription routes: the body's error code picks the class ------------------------------

CONTROL_CASES = [
    (400, "INVALID_REQUEST", InvalidSubscriptionRequestError),
    (400, "WEBHOOK_URL_REJECTED", WebhookUrlRejectedError),
    (401, "TOKEN_INVALID", WakeTokenError),
    (401, "TOKEN_EXPIRED", WakeTokenExpiredError),
    (404, "SUBSCRIPTION_NOT_FOUND", SubscriptionNotFoundError),
    (409, "SUBSCRIPTION_ALREADY_EXISTS", SubscriptionExistsError),
    (409, "ALREADY_CLAIMED", AlreadyClaimedError),
    (409, "FENCED", FencedError),
    (409, "NO_PENDING_WORK", NoPendingWorkError),
    (409, "INVALID_OFFSET", AckOffsetError),
]


def control_body(code: str, **extra: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": "no", **extra}}).encode()


@pytest.mark.parametrize(("status", "code", "cls"), CONTROL_CASES)
def test_every_control_code_maps_to_its_class(
    status: int, code: str, cls: type[StatusError]
) -> None:
    body = control_body(code)
    error = error_for_control_response(response(status, body=body), operation="claim", body=body)
    assert type(error) is cls
    assert error.code == code
    assert error.status == status
    assert "abc123" not in str(error)
    assert "hunter2" not in repr(error)


def test_already_claimed_keeps_the_holder_and_generation() -> None:
    body = control_body("ALREADY_CLAIMED", current_holder="w-2", generation=7)
    error = error_for_control_response(response(409, body=body), operation="claim", body=body)
    assert isinstance(error, AlreadyClaimedError)
    assert (error.current_holder, error.generation) == ("w-2", 7)


def test_already_claimed_with_wrong_types_drops_them() -> None:
    body = control_body("ALREADY_CLAIMED", current_holder=3, generation=True)
    error = error_for_control_response(response(409, body=body), operation="claim", body=body)
    assert isinstance(error, AlreadyClaimedError)
    assert (error.current_holder, error.generation) == (None, None)


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (409, control_body("TOKEN_EXPIRED"), ConflictError),  # a code under the wrong status
        (401, control_body("NOT_A_CODE"), UnauthorizedError),
        (404, b"not json", NotFoundError),
        (400, b'{"error": "INVALID_REQUEST"}', BadRequestError),
        (400, b"[" * 100_000, BadRequestError),
        (500, control_body("FENCED"), ServerError),
    ],
)
def test_unknown_or_implausible_control_bodies_fall_back_to_the_status(
    status: int, body: bytes, cls: type[StatusError]
) -> None:
    error = error_for_control_response(response(status, body=body), operation="ack", body=body)
    assert type(error) is cls
