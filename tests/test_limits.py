"""Unit tests of ``_limits.py``: ReadLimits defaults and validation."""

from __future__ import annotations

import pytest

from durable_streams import InvalidArgumentError, ReadLimits, StreamHandle

MIB = 1024 * 1024


def test_defaults_a_demanding_user_can_live_with() -> None:
    limits = ReadLimits()
    assert limits.max_body_bytes == 64 * MIB
    assert limits.max_message_bytes == 64 * MIB
    assert limits.max_sse_line_bytes >= limits.max_message_bytes * 4 // 3  # base64 of a message
    assert limits.max_json_depth == 128
    assert 1000 <= limits.max_decompression_ratio < 1100


@pytest.mark.parametrize(
    "fields",
    [
        {"max_body_bytes": 0},
        {"max_message_bytes": -1},
        {"max_json_depth": 0},
        {"max_json_depth": 10_000},
        {"max_decompression_ratio": 0.5},
        {"max_decompression_ratio": float("inf")},
        {"max_body_byte": 1},  # a typo is an error, not ignored
    ],
)
def test_invalid_limits_are_invalid_arguments(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid ReadLimits"):
        ReadLimits(**fields)


def test_limits_are_immutable_values() -> None:
    limits = ReadLimits(max_body_bytes=MIB)
    assert limits.model_copy(update={"max_json_depth": 32}).max_body_bytes == MIB
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        limits.max_body_bytes = 2  # type: ignore[misc]


def test_a_handle_refuses_anything_but_read_limits() -> None:
    with pytest.raises(InvalidArgumentError, match="limits"):
        StreamHandle("http://streams.test/v1/stream/s", limits={"max_body_bytes": 1})  # type: ignore[arg-type]
