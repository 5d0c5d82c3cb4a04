"""Unit tests of ``_units.py``: turning one read response (or SSE group) into a unit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from durable_streams import ParseError, ReadLimits, ServerError
from durable_streams._position import ReadPosition
from durable_streams._units import (
    Skip,
    Unit,
    byte_groups,
    check_progress,
    check_sse_data,
    is_event_stream,
    json_item_groups,
    parse_json_body,
    response_end,
    sse_unit,
)

URL = "http://streams.test/v1/stream/s"
OFFSET = "0000000000000000_0000000000000005"


def response(
    status: int = 200, headers: dict[str, str] | None = None, **kw: object
) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, request=httpx.Request("GET", URL), **kw)  # type: ignore[arg-type]


# -- response_end -----------------------------------------------------------------------------


def test_response_end_reads_the_protocol_headers() -> None:
    res = response(
        headers={
            "Stream-Next-Offset": "0000000000000000_0000000000000009",
            "Stream-Cursor": "c1",
            "Stream-Up-To-Date": "true",
        }
    )
    assert response_end(res, offset=OFFSET, where="s") == ReadPosition(
        offset="0000000000000000_0000000000000009",
        cursor="c1",
        up_to_date=True,
        closed=False,
    )


def test_a_closed_stream_is_also_up_to_date() -> None:
    res = response(headers={"Stream-Next-Offset": OFFSET, "Stream-Closed": "true"})
    assert response_end(res, offset=OFFSET, where="s") == ReadPosition(
        offset=OFFSET, cursor=None, up_to_date=True, closed=True
    )


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_next_offset_is_a_parse_error(value: str | None) -> None:
    headers = {} if value is None else {"Stream-Next-Offset": value}
    with pytest.raises(ParseError, match="no Stream-Next-Offset") as caught:
        response_end(response(headers=headers), offset=OFFSET, where="s")
    assert caught.value.offset == OFFSET
    assert caught.value.status == 200


# -- check_progress ---------------------------------------------------------------------------


def unit(**kw: Any) -> Unit:
    fields: dict[str, Any] = {
        "data": b"",
        "items": None,
        "next_offset": OFFSET,
        "cursor": None,
        "up_to_date": False,
        "closed": False,
    }
    fields.update(kw)
    end = ReadPosition(
        offset=fields["next_offset"],
        cursor=fields["cursor"],
        up_to_date=fields["up_to_date"],
        closed=fields["closed"],
    )
    return Unit(data=fields["data"], items=fields["items"], end=end)


def test_no_data_no_progress_not_caught_up_is_a_server_error() -> None:
    # A server answering this forever would make the reader spin.
    with pytest.raises(ServerError, match="no progress"):
        check_progress(unit(), response(), offset=OFFSET, where="s")


@pytest.mark.parametrize(
    "fields",
    [
        {"data": b"x"},
        {"items": [1]},
        {"up_to_date": True},
        {"closed": True},
        {"next_offset": "0000000000000000_0000000000000006"},
    ],
)
def test_any_sign_of_progress_is_accepted(fields: dict[str, object]) -> None:
    check_progress(unit(**fields), response(), offset=OFFSET, where="s")


def test_has_data_looks_at_items_on_json_streams() -> None:
    assert not unit(data=None, items=[]).has_data
    assert unit(data=None, items=[None]).has_data  # a null message is still a message
    assert unit(data=b"a").has_data


# -- parse_json_body --------------------------------------------------------------------------


def test_json_body_is_the_list_of_messages() -> None:
    body = json.dumps([{"a": 1}, [1, 2], None, "s"]).encode()
    assert parse_json_body(body, offset=OFFSET, where="s", url=URL) == [
        {"a": 1},
        [1, 2],
        None,
        "s",
    ]


def test_an_empty_json_body_has_no_messages() -> None:
    assert parse_json_body(b"", offset=OFFSET, where="s", url=URL) == []


@pytest.mark.parametrize("body", [b"[1, 2", b"\xff\xfe", b"{]"])
def test_invalid_json_is_a_parse_error_with_the_offset(body: bytes) -> None:
    with pytest.raises(ParseError, match="invalid JSON") as caught:
        parse_json_body(body, offset=OFFSET, where="s", url=URL)
    assert caught.value.offset == OFFSET
    assert caught.value.__cause__ is None  # no raw json exception leaks as the cause


@pytest.mark.parametrize("body", [b'{"a": 1}', b"1", b'"s"', b"null"])
def test_a_json_body_that_is_not_an_array_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="not a JSON array"):
        parse_json_body(body, offset=OFFSET, where="s", url=URL)


# -- sse_unit ---------------------------------------------------------------------------------

CONTROL = json.dumps({"streamNextOffset": "0000000000000000_0000000000000007", "streamCursor": "k"})


def test_sse_text_data_events_are_joined() -> None:
    result = sse_unit(["ab", "c"], CONTROL, base64=False, json_mode=False, offset=OFFSET)
    assert result.data == b"abc"
    assert result.items is None
    assert result.end is not None
    assert (result.end.offset, result.end.cursor) == ("0000000000000000_0000000000000007", "k")
    assert not result.end.up_to_date
    assert not result.end.closed


def test_sse_json_data_events_are_flattened_into_messages() -> None:
    result = sse_unit(
        ["[1, 2]", '[{"x": 3}]'], CONTROL, base64=False, json_mode=True, offset=OFFSET
    )
    assert result.data is None
    assert result.items == [1, 2, {"x": 3}]


def test_sse_base64_data_is_decoded() -> None:
    result = sse_unit(["AAEC", "/w=="], CONTROL, base64=True, json_mode=False, offset=OFFSET)
    assert result.data == b"\x00\x01\x02\xff"


def test_a_closed_control_means_up_to_date_even_without_the_flag() -> None:
    control = json.dumps({"streamNextOffset": OFFSET, "streamClosed": True})
    result = sse_unit([], control, base64=False, json_mode=False, offset=OFFSET)
    assert result.end is not None
    assert result.end.closed
    assert result.end.up_to_date


@pytest.mark.parametrize("control", ["", "not json", "[]", "{}"])
def test_a_bad_control_event_is_a_parse_error(control: str) -> None:
    with pytest.raises(ParseError):
        sse_unit([], control, base64=False, json_mode=False, offset=OFFSET)


def test_bad_json_in_an_sse_data_event_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        sse_unit(["[1,"], CONTROL, base64=False, json_mode=True, offset=OFFSET)


# -- responses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        ("application/json", False),
        (None, False),
    ],
)
def test_is_event_stream(content_type: str | None, expected: bool) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    assert is_event_stream(response(headers=headers)) is expected


# -- byte_groups / json_item_groups -----------------------------------------------------------


async def feed(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def groups(source: AsyncIterator[tuple[Unit, bool]]) -> list[tuple[Any, bool]]:
    """``(data or items, last)`` of each group; every group is a partial unit (no offset)."""
    result: list[tuple[Any, bool]] = []
    async for unit, last in source:
        assert unit.end is None
        result.append((unit.items if unit.items is not None else unit.data, last))
    return result


@pytest.mark.anyio
async def test_byte_groups_hold_one_part_back_for_the_last_group() -> None:
    assert await groups(byte_groups(feed(b"ab", b"", b"cd", b"e"), skip=Skip(0))) == [
        (b"ab", False),
        (b"cd", False),
        (b"e", True),
    ]
    assert await groups(byte_groups(feed(), skip=Skip(0))) == [(b"", True)]


@pytest.mark.anyio
@pytest.mark.parametrize("skip", [0, 1, 2, 3, 5, 6])
async def test_byte_groups_drop_exactly_the_bytes_handed_out_before_a_retry(skip: int) -> None:
    parts = await groups(byte_groups(feed(b"ab", b"cd", b"ef"), skip=Skip(skip)))
    assert b"".join(part for part, _ in parts) == b"abcdef"[skip:]
    assert [last for _, last in parts][-1] is True


@pytest.mark.anyio
@pytest.mark.parametrize("skip", [0, 1, 999, 1000])
async def test_json_item_groups_drop_the_items_handed_out_before_a_retry(skip: int) -> None:
    items = [{"n": n, "pad": "x" * 2000} for n in range(1000)]  # ~2 MB: several groups
    body = json.dumps(items).encode()
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    where: dict[str, Any] = {"offset": OFFSET, "where": URL, "url": URL}
    result = await groups(json_item_groups(feed(*chunks), skip=Skip(skip), **where))
    assert [item for group, _ in result for item in group] == items[skip:]
    assert [last for _, last in result].count(True) == 1
    assert result[-1][1] is True
    if skip == 0:
        assert len(result) >= 2  # handed out as the body arrived, not only at the end


@pytest.mark.anyio
async def test_json_item_groups_report_invalid_json_with_the_offset() -> None:
    where: dict[str, Any] = {"offset": OFFSET, "where": URL, "url": URL}
    with pytest.raises(ParseError, match="invalid JSON") as caught:
        await groups(json_item_groups(feed(b'[{"a": 1}, {'), skip=Skip(0), **where))
    assert caught.value.offset == OFFSET


def test_json_nested_too_deeply_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="nested too deeply"):
        parse_json_body(b"[" * 100_000 + b"]" * 100_000, offset=OFFSET, where=URL, url=URL)


def _sse_check(data: str, *, base64: bool = False, json_mode: bool = False) -> None:
    limits = ReadLimits(max_message_bytes=100)
    check_sse_data(
        data, base64=base64, json_mode=json_mode, limits=limits, offset="0_1", url="http://x/s"
    )


def test_an_sse_event_over_max_message_bytes_is_a_parse_error() -> None:
    _sse_check("t" * 100)
    with pytest.raises(ParseError, match="max_message_bytes=100"):
        _sse_check("t" * 101)
    with pytest.raises(ParseError, match="max_message_bytes=100"):
        _sse_check("é" * 60)  # 120 bytes in 60 characters
    _sse_check("QUJD" * 33, base64=True)  # 99 bytes once decoded
    with pytest.raises(ParseError, match="max_message_bytes=100"):
        _sse_check("QUJD" * 34, base64=True)


def test_a_json_sse_event_may_be_large_but_not_its_messages() -> None:
    _sse_check(json.dumps(["m" * 50] * 100), json_mode=True)
    with pytest.raises(ParseError, match="max_message_bytes=100"):
        _sse_check(json.dumps(["small", "m" * 200]), json_mode=True)
