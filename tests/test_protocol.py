"""Unit tests of ``_protocol.py``: media types and protocol header values."""

from __future__ import annotations

import httpx
import pytest

from durable_streams._protocol import (
    MAX_SAFE_INTEGER,
    flag,
    header_int,
    is_json,
    is_text,
    media_type,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", ""),
        ("application/json", "application/json"),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("  text/plain ;format=flowed", "text/plain"),
    ],
)
def test_media_type_drops_parameters_and_case(value: str | None, expected: str) -> None:
    assert media_type(value) == expected


@pytest.mark.parametrize(
    ("value", "json_mode", "text"),
    [
        ("application/json", True, True),
        ("application/json; charset=utf-8", True, True),
        ("text/plain", False, True),
        ("text/event-stream", False, True),
        ("application/octet-stream", False, False),
        ("application/jsonl", False, False),
        (None, False, False),
    ],
)
def test_json_and_text_modes(value: str | None, json_mode: bool, text: bool) -> None:
    assert is_json(value) is json_mode
    assert is_text(value) is text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" true ", True),
        ("false", False),
        ("1", False),
        ("yes", False),
        ("", False),
        (None, False),
    ],
)
def test_only_true_is_a_set_flag(value: str | None, expected: bool) -> None:
    assert flag(value) is expected


def test_header_int_is_none_when_absent_or_malformed() -> None:
    headers = httpx.Headers({"a": "12", "b": "x", "c": "-3", "d": ""})
    assert header_int(headers, "a") == 12
    assert header_int(headers, "c") == -3
    assert header_int(headers, "b") is None
    assert header_int(headers, "d") is None
    assert header_int(headers, "missing") is None


def test_the_largest_producer_number_is_javascripts_safe_integer() -> None:
    assert MAX_SAFE_INTEGER == 9007199254740991
