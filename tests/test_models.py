"""Unit tests of ``_models.py``: the read Batch and the immutable result records."""

from __future__ import annotations

import pydantic
import pytest

from durable_streams import AppendResult, Batch, ParseError, Position, UsageError


def batch(data: bytes | None, items: list[object] | None, *, json_mode: bool) -> Batch:
    return Batch(
        data,
        items,
        offset="0000_0009",
        cursor="c",
        up_to_date=True,
        closed=False,
        json_mode=json_mode,
    )


def test_a_json_batch_serialises_its_items_only_when_asked() -> None:
    b = batch(None, [{"a": 1}, "é"], json_mode=True)
    assert b.items == [{"a": 1}, "é"]
    assert len(b) == 2
    assert b.data == '[{"a":1},"é"]'.encode()
    assert b.text == '[{"a":1},"é"]'


def test_a_byte_batch_has_no_items() -> None:
    b = batch(b"raw", None, json_mode=False)
    assert len(b) == 3
    assert b.text == "raw"
    with pytest.raises(UsageError, match="only available on JSON streams"):
        _ = b.items


def test_text_of_bytes_that_are_not_utf8_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="not valid UTF-8") as caught:
        _ = batch(b"\xff", None, json_mode=False).text
    assert caught.value.offset == "0000_0009"


def test_a_batch_resumes_at_its_offset() -> None:
    b = batch(b"x", None, json_mode=False)
    assert b.position == Position("0000_0009")
    assert "offset='0000_0009'" in repr(b)


def test_results_are_immutable_and_strict() -> None:
    result = AppendResult(next_offset="0000_0001")
    with pytest.raises(pydantic.ValidationError):
        result.next_offset = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        AppendResult(unknown=1)  # type: ignore[call-arg]
