"""Append payloads (one message per call, batches as JSON arrays) and JSON body splitting."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import durable_streams._codec as codec_module
from durable_streams import EmptyAppendError, InvalidArgumentError
from durable_streams._codec import (
    JsonArraySplitter,
    encode_item,
    join_items,
    json_array,
    nesting_depth,
)


class Event(pydantic.BaseModel):
    kind: str
    at: datetime


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values.filter(lambda v: not isinstance(v, str)))  # a str is pre-serialised
def test_any_json_value_round_trips_as_one_message(value: Any) -> None:
    encoded = encode_item(value, json_mode=True)
    assert json.loads(encoded) == value
    # Wrapped as the server unwraps it: exactly one message whose value is ``value``.
    assert json.loads(json_array([encoded])) == [value]


def test_str_and_bytes_are_pre_serialised_json_on_json_streams() -> None:
    assert encode_item('{"a": 1}', json_mode=True) == b'{"a": 1}'
    assert encode_item(b"[1,2]", json_mode=True) == b"[1,2]"
    # Not parsed again: the fast path passes the text through untouched.
    assert encode_item("not json", json_mode=True) == b"not json"


def test_lists_and_models_are_serialised() -> None:
    assert encode_item([1, [2]], json_mode=True) == b"[1,[2]]"
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert json.loads(encode_item(Event(kind="k", at=at), json_mode=True)) == {
        "kind": "k",
        "at": "2026-01-02T03:04:05Z",
    }
    assert encode_item({"é": "✓"}, json_mode=True).decode() == '{"é":"✓"}'
    assert encode_item({"NaN": "Infinity"}, json_mode=True) == b'{"NaN":"Infinity"}'


def test_byte_streams_take_bytes_like_and_text() -> None:
    assert encode_item("héllo", json_mode=False) == "héllo".encode()
    assert encode_item(bytearray(b"ab"), json_mode=False) == b"ab"
    assert encode_item(memoryview(b"cd"), json_mode=False) == b"cd"


@pytest.mark.parametrize("value", [{"a": 1}, 5, None, [b"x"]])
def test_byte_streams_reject_other_values(value: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        encode_item(value, json_mode=False)
    assert caught.value.field == "data"


@pytest.mark.parametrize("value", [b"", "", bytearray()])
@pytest.mark.parametrize("json_mode", [True, False])
def test_empty_items_are_refused(value: object, json_mode: bool) -> None:
    with pytest.raises(EmptyAppendError) as caught:
        encode_item(value, json_mode=json_mode)
    # Refused locally: nothing was sent, so no status; the code of a client-side refusal.
    assert caught.value.status is None
    assert caught.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize("value", [object(), float("nan"), {"x": [float("-inf")]}, {"x": object()}])
def test_unserialisable_values_are_invalid_arguments(value: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        encode_item(value, json_mode=True)
    assert caught.value.field == "data"


def test_batches() -> None:
    assert json_array([b"1", b'{"a":2}']) == b'[1,{"a":2}]'
    assert join_items([b"ab", b"cd"], json_mode=False) == b"abcd"
    assert join_items([b"[1]", b"2"], json_mode=True) == b"[[1],2]"


# -- splitting streamed JSON bodies ----------------------------------------------------------


def split(body: bytes, cuts: list[int], step: int) -> tuple[list[Any], list[Any]]:
    """(items handed out while feeding, items handed out at the end)."""
    splitter = JsonArraySplitter(step=step)
    early: list[Any] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(body)]:
        early += splitter.feed(body[start:cut])
        start = cut
    return early, splitter.close()


@given(
    st.lists(json_values, max_size=30),
    st.sampled_from([None, 0, 2]),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
    st.integers(min_value=1, max_value=64),
)
def test_split_items_equal_the_parsed_array(
    items: list[Any], indent: int | None, separators: tuple[str, str], cuts: list[int], step: int
) -> None:
    body = (" \n" + json.dumps(items, indent=indent, separators=separators) + "\n").encode()
    early, rest = split(body, [c % (len(body) + 1) for c in cuts], step)
    assert early + rest == items


def test_items_are_handed_out_as_the_body_arrives() -> None:
    items = [{"n": n, "text": "a, [b] {c}"} for n in range(1000)]
    body = json.dumps(items).encode()
    early, rest = split(body, list(range(0, len(body), 500)), step=1024)
    assert early + rest == items
    assert len(early) > 900  # not held back until the end
    assert len(rest) < 50


def test_small_bodies_are_parsed_once_at_the_end() -> None:
    early, rest = split(b'[1, "x", {"a": [2]}]', [3, 9], step=1024)
    assert (early, rest) == ([], [1, "x", {"a": [2]}])


@pytest.mark.parametrize("body", [b"", b"  ", b"[]", b" [ \n] "])
def test_empty_bodies_and_arrays_have_no_items(body: bytes) -> None:
    for step in (1, 1024):
        assert split(body, [1], step) == ([], [])


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1}',
        b"1",
        b"[1,,2]",
        b"[,1]",
        b"[1,]",
        b"[1, 2] extra",
        b"[1, 2",
        b"[1, 2]]",
        b"[1, \xff]",
        b"[1, NaNa]",
        b"[1,\x002\x00]\x00",  # UTF-16 is not guessed, whatever the chunking
        b'[{"a":1},{"b":"\xed\xa0\x80"}]',  # a lone surrogate is not UTF-8
        b"\xef\xbb\xbf[1, 2]",  # nor is a byte order mark JSON text
        b"[" * 100_000 + b"]" * 100_000,  # too deep for the parser: ValueError, not RecursionError
    ],
)
@pytest.mark.parametrize("step", [1, 3, 1024])
def test_anything_but_one_json_array_is_refused(body: bytes, step: int) -> None:
    with pytest.raises(ValueError):
        split(body, list(range(0, len(body), 2)), step)


def test_an_item_over_the_limit_is_refused_before_the_body_ends() -> None:
    splitter = JsonArraySplitter(step=64, max_item_bytes=1000)
    assert splitter.feed(b'[1, "') == []
    fed = 5

    def feed_until_refused() -> None:
        nonlocal fed
        while fed < 10_000:
            splitter.feed(b"a, b, " * 10)  # commas inside the string never cut it
            fed += 60

    with pytest.raises(ValueError, match="larger than max_message_bytes=1000"):
        feed_until_refused()
    assert fed <= 2 * (1000 + 64)  # the buffer is checked each time it doubles


def split_whole(body: bytes, *, step: int, max_item_bytes: int) -> list[Any]:
    """All items of ``body`` fed in one chunk."""
    splitter = JsonArraySplitter(step=step, max_item_bytes=max_item_bytes)
    return splitter.feed(body) + splitter.close()


@pytest.mark.parametrize("step", [8, 64, 1 << 20])
@pytest.mark.parametrize(
    ("item", "over"),
    [
        ('"' + "x" * 98 + '"', False),  # exactly 100 bytes
        ('"' + "x" * 99 + '"', True),
        ('"' + "é" * 49 + '"', False),  # 49 characters, 100 bytes
        ('"' + "é" * 50 + '"', True),  # 52 characters, 102 bytes
        ('{"a": [' + ", ".join(["1"] * 40) + "]}", True),
    ],
)
def test_a_complete_item_over_the_limit_is_refused_wherever_it_is(
    item: str, over: bool, step: int
) -> None:
    """Whole items arriving in one chunk, first, middle or last, small or large bodies."""
    for position in range(3):
        items = ["1", '"small"', "[2, 3]"]
        items.insert(position, item)
        body = ("[" + ", ".join(items) + "]").encode()
        if over:
            with pytest.raises(ValueError, match="larger than max_message_bytes=100"):
                split_whole(body, step=step, max_item_bytes=100)
        else:
            early, rest = split(body, [len(body) // 2], step)
            assert early + rest == json.loads(body)


@given(st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b","]), max_size=80))
def test_nesting_depth_is_the_same_whatever_the_window(parts: list[bytes]) -> None:
    # Windows bound the copies; escapes, strings and brackets may straddle them.
    text = b"".join(parts)
    whole = nesting_depth(text)
    original = codec_module.DEPTH_WINDOW_BYTES
    try:
        for window in (1, 2, 3, 7):
            codec_module.DEPTH_WINDOW_BYTES = window
            assert nesting_depth(text) == whole
    finally:
        codec_module.DEPTH_WINDOW_BYTES = original
