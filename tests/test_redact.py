"""Unit tests of ``_redact.py``: secrets out of URLs, headers, messages and causes."""

from __future__ import annotations

import base64

import httpx
import pytest

from durable_streams._redact import (
    REDACTED,
    excerpt,
    redact_headers,
    redact_url,
    request_secrets,
    scrub,
    scrub_exception,
)

URL = "http://alice:pa55word@streams.test/v1/stream/s?token=t0ken-value&offset=0_5&live=sse"


def test_a_url_keeps_protocol_params_and_loses_password_and_other_values() -> None:
    redacted = redact_url(URL)
    assert "pa55word" not in redacted
    assert "t0ken-value" not in redacted
    assert redacted.startswith(f"http://{REDACTED}:{REDACTED}@streams.test/v1/stream/s?")
    assert "offset=0_5" in redacted
    assert "live=sse" in redacted


def test_urls_that_do_not_parse_are_not_echoed() -> None:
    assert redact_url("http://[::1/oops?token=x") == "<invalid URL>"


def test_credential_headers_and_url_headers_are_redacted() -> None:
    headers = {
        "Authorization": "Bearer abc",
        "X-Api-Key": "k",
        "Location": "http://streams.test/next?token=secret",
        "Content-Type": "text/plain",
    }
    redacted = redact_headers(headers)
    by_name = {name.lower(): value for name, value in redacted.items()}
    assert by_name["authorization"] == REDACTED
    assert by_name["x-api-key"] == REDACTED
    assert "secret" not in by_name["location"]
    assert by_name["content-type"] == "text/plain"


def test_request_secrets_cover_every_form_a_credential_travels_in() -> None:
    request = httpx.Request("GET", URL, headers={"authorization": "Bearer s3cr3t-token"})
    secrets = request_secrets(request)
    basic = base64.b64encode(b"alice:pa55word").decode()
    for secret in ("pa55word", basic, "t0ken-value", "Bearer s3cr3t-token", "s3cr3t-token"):
        assert secret in secrets
    assert "0_5" not in secrets  # protocol values are not secrets
    assert list(secrets) == sorted(secrets, key=len, reverse=True)


def test_scrub_replaces_plain_and_url_quoted_secrets() -> None:
    text = "failed for pa55word/x and p%40ss"
    assert scrub(text, ["pa55word", "p@ss"]) == f"failed for {REDACTED}/x and {REDACTED}"


def test_a_scrubbed_httpx_cause_loses_its_request_chain_and_secrets() -> None:
    request = httpx.Request("GET", URL, headers={"authorization": "Bearer s3cr3t-token"})
    exc = httpx.ConnectError("cannot connect with Bearer s3cr3t-token", request=request)
    exc.__cause__ = ValueError("pa55word")
    scrubbed = scrub_exception(exc, request)
    assert scrubbed is exc  # same type: callers still tell a refused connection apart
    assert "s3cr3t-token" not in str(scrubbed)
    assert (scrubbed.__cause__, scrubbed.__context__) == (None, None)
    with pytest.raises(RuntimeError):  # httpx: no request (URL and headers) attached any more
        _ = exc.request


def test_excerpt_escapes_control_characters_and_clips() -> None:
    assert excerpt("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert excerpt("x" * 10, 4) == "xxxx…"
