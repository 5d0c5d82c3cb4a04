"""Unit tests of ``_position.py``: the public Position value and the read loop's ReadPosition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_streams import InvalidOffsetError, Position
from durable_streams._position import ReadPosition

OFFSET = "0000000000000000_0000000000000042"


@given(
    offset=st.text(min_size=1, max_size=40),
    skip=st.integers(min_value=0, max_value=2**63),
    unit=st.sampled_from(["items", "bytes"]),
)
def test_the_storage_form_parses_back_to_the_same_position(
    offset: str, skip: int, unit: str
) -> None:
    position = Position(offset, skip, unit)  # type: ignore[arg-type]
    assert Position.parse(str(position)) == position


def test_a_plain_offset_is_a_position_with_nothing_to_skip() -> None:
    assert Position(OFFSET) == Position(OFFSET, 0, "items")
    # With nothing to skip, what skip would count does not matter.
    assert Position(OFFSET, 0, "bytes") == Position(OFFSET)
    assert str(Position(OFFSET, 3)) == f"dsp1:items:3:{OFFSET}"
    assert str(Position(OFFSET, 7, "bytes")) == f"dsp1:bytes:7:{OFFSET}"


@pytest.mark.parametrize(
    "text",
    [
        OFFSET,  # a plain offset is never taken for a position
        "",
        "dsp1",
        "dsp1:items:3",
        f"dsp1:items::{OFFSET}",
        f"dsp1:items:-1:{OFFSET}",
        f"dsp1:items:+1:{OFFSET}",
        f"dsp1:items:01:{OFFSET}",
        f"dsp1:items:1.5:{OFFSET}",
        f"dsp1:items:\u0663:{OFFSET}",  # a non-ASCII digit
        "dsp1:items:1:",
        f"dsp1:chars:1:{OFFSET}",
        f"dsp2:items:1:{OFFSET}",
        f"DSP1:items:1:{OFFSET}",
    ],
)
def test_anything_else_is_an_invalid_offset_error(text: str) -> None:
    with pytest.raises(InvalidOffsetError) as caught:
        Position.parse(text)
    assert caught.value.status is None  # a local error: nothing was sent
    assert caught.value.code == "INVALID_OFFSET"


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidOffsetError):
        Position.parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"offset": ""},
        {"offset": OFFSET, "skip": -1},
        {"offset": OFFSET, "skip": True},
        {"offset": OFFSET, "unit": "chars"},
    ],
)
def test_invalid_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidOffsetError):
        Position(**fields)  # type: ignore[arg-type]


def test_offsets_may_contain_the_separator() -> None:
    position = Position("a:b:c", 2)
    assert Position.parse(str(position)) == position


def test_read_position_advance_keeps_the_last_cursor() -> None:
    start = ReadPosition(offset="a", cursor="c1")
    moved = start.advance(ReadPosition(offset="b", up_to_date=True))
    assert moved == ReadPosition(offset="b", cursor="c1", up_to_date=True)
    assert moved.advance(ReadPosition(offset="c", cursor="c2")).cursor == "c2"


def test_read_position_counts_what_was_handed_out() -> None:
    position = ReadPosition(offset="a", skip=2).handed_out(3)
    assert position.skip == 5
    assert position.resumable("bytes") == Position("a", 5, "bytes")
    # Moving to a response's end forgets the count (the end says what is left to skip).
    assert position.advance(ReadPosition(offset="b")).skip == 0
