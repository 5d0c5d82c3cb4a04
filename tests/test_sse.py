"""Unit tests of the SSE decoder and the SSE payload parsers (no server)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_streams import ControlEvent, InvalidArgumentError, ParseError
from durable_streams._sse import (
    SSEDecoder,
    SSEEvent,
    decode_base64_data,
    iter_sse_events,
    parse_control,
    parse_json_data,
)

BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes], **limits: int) -> list[SSEEvent]:
    decoder = SSEDecoder(**limits)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def decode_whole(stream: bytes, **limits: int) -> list[SSEEvent]:
    return decode([stream], **limits)


def decode_bytewise(stream: bytes, **limits: int) -> list[SSEEvent]:
    return decode([stream[i : i + 1] for i in range(len(stream))], **limits)


def feeds_before_error(decoder: SSEDecoder, chunk: bytes, limit: int = 10_000) -> int:
    """How many times ``chunk`` is accepted before the decoder raises ParseError."""
    for fed in range(limit):
        try:
            decoder.feed(chunk)
        except ParseError:
            return fed
    pytest.fail(f"no ParseError after {limit} feeds")


def ev(data: str, event: str = "message") -> SSEEvent:
    return SSEEvent(event=event, data=data)


# -- line endings ------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"])
def test_each_line_ending_ends_lines(end: str) -> None:
    stream = f"event: control{end}data: a{end}data: b{end}{end}data: c{end}{end}".encode()
    expected = [ev("a\nb", "control"), ev("c")]
    assert decode_whole(stream) == expected
    assert decode_bytewise(stream) == expected


def test_mixed_line_endings_in_one_stream() -> None:
    stream = b"data: 1\rdata: 2\ndata: 3\r\n\rdata: 4\n\r\n"
    assert decode_whole(stream) == [ev("1\n2\n3"), ev("4")]


def test_cr_then_lf_across_a_chunk_boundary_is_one_line_end() -> None:
    # Were the LF a second line end, "data: a" would be dispatched alone.
    events = decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [ev("a\nb")]


def test_cr_at_chunk_end_dispatches_without_waiting_for_the_next_chunk() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\r") == [ev("a")]
    # The LF that follows belongs to that CR and is not another blank line.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: b\n\n") == [ev("b")]


def test_cr_at_chunk_end_followed_by_text_starts_a_new_line() -> None:
    assert decode([b"data: a\r", b"data: b\r", b"\r"]) == [ev("a\nb")]


def test_two_crs_are_two_line_ends_and_cr_crlf_too() -> None:
    assert decode_whole(b"data: a\r\rdata: b\r\r\n") == [ev("a"), ev("b")]


def test_empty_chunks_change_nothing() -> None:
    assert decode([b"", b"data: a\r", b"", b"\n", b"", b"\n", b""]) == [ev("a")]


# -- fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "data"),
    [
        (b"data:x", "x"),
        (b"data: x", "x"),
        (b"data:  x", " x"),
        (b"data:   x ", "  x "),
        (b"data:", ""),
        (b"data: ", ""),
        (b"data", ""),
        (b"data:x:y: z", "x:y: z"),
    ],
)
def test_exactly_one_space_after_the_colon_is_stripped(line: bytes, data: str) -> None:
    assert decode_whole(line + b"\n\n") == [ev(data)]


def test_space_before_the_colon_makes_another_field() -> None:
    assert decode_whole(b"data : x\n\n") == []


def test_field_names_are_case_sensitive() -> None:
    assert decode_whole(b"Data: x\nEVENT: y\ndata: z\n\n") == [ev("z")]


def test_multiple_data_lines_join_with_newline() -> None:
    stream = b"data: first\ndata:\ndata:  third\ndata\n\n"
    assert decode_whole(stream) == [ev("first\n\n third\n")]


def test_comments_are_ignored() -> None:
    stream = b": keep-alive\n:\ndata: a\n:data: not data\n\n: trailing\n\n"
    assert decode_whole(stream) == [ev("a")]


def test_event_without_data_is_not_dispatched_and_its_type_does_not_leak() -> None:
    stream = b"event: control\n\ndata: plain\n\n"
    assert decode_whole(stream) == [ev("plain")]


def test_event_type_resets_after_each_dispatch() -> None:
    stream = b"event: control\ndata: {}\n\ndata: next\n\n"
    assert decode_whole(stream) == [ev("{}", "control"), ev("next")]


def test_last_event_field_wins_and_empty_type_means_message() -> None:
    assert decode_whole(b"event: a\nevent: b\ndata: x\n\n") == [ev("x", "b")]
    assert decode_whole(b"event: a\nevent:\ndata: x\n\n") == [ev("x")]
    assert decode_whole(b"event\ndata: x\n\n") == [ev("x")]


def test_unknown_event_types_pass_through() -> None:
    stream = b"event: surprise\ndata: ?\n\nevent: data\ndata: [1]\n\n"
    assert decode_whole(stream) == [ev("?", "surprise"), ev("[1]", "data")]


def test_id_retry_and_unknown_fields_are_ignored() -> None:
    stream = b"id: 7\nretry: 10\nfoo: bar\ndata: a\nid\n\nid: 8\n\n"
    assert decode_whole(stream) == [ev("a")]


# -- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c"])
def test_unicode_line_separators_stay_inside_data(separator: str) -> None:
    data = f"a{separator}b"
    stream = f"event: d{separator}x\ndata: {data}\n\n".encode()
    expected = [ev(data, f"d{separator}x")]
    assert decode_whole(stream) == expected
    assert decode_bytewise(stream) == expected


def test_multibyte_characters_split_across_chunks_decode_whole() -> None:
    stream = "data: é€😀\n\n".encode()
    # Every split point, including inside each multi-byte sequence.
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]]) == [ev("é€😀")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    events = decode_whole(b"event: \xff\ndata: a\xc3\ndata: \xe2\x82\n\n")
    assert events == [ev("a\ufffd\n\ufffd", "\ufffd")]


def test_nul_bytes_survive() -> None:
    assert decode_whole(b"data: a\x00b\n\n") == [ev("a\x00b")]


# -- BOM ---------------------------------------------------------------------------------------


def test_leading_bom_is_stripped() -> None:
    stream = BOM + b"data: a\n\n"
    assert decode_whole(stream) == [ev("a")]
    assert decode_bytewise(stream) == [ev("a")]


def test_only_the_first_bom_is_stripped() -> None:
    # A second BOM is part of the field name, which then is not "data".
    assert decode_whole(BOM + BOM + b"data: a\n\ndata: b\n\n") == [ev("b")]
    assert decode_whole(b"data: a\n\n" + BOM + b"data: b\n\n") == [ev("a")]


def test_partial_bom_prefix_is_kept_as_content() -> None:
    # "\xef\xbb" is not a BOM: it stays, so the first field is not "data".
    assert decode([b"\xef", b"\xbbdata: a\n\n", b"data: b\n\n"]) == [ev("b")]
    assert decode([b"\xef", b"\xbb"]) == []


def test_bom_inside_data_is_kept() -> None:
    assert decode_whole(b"data: \xef\xbb\xbfx\n\n") == [ev("\ufeffx")]


# -- end of input ------------------------------------------------------------------------------


def test_close_drops_an_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: complete\n\ndata: pending\n") == [ev("complete")]
    assert decoder.feed(b"data: partial line") == []
    assert decoder.close() == []


def test_close_resets_the_decoder() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"event: control\ndata: x\n")
    decoder.close()
    assert decoder.feed(BOM + b"data: y\n\n") == [ev("y")]


# -- limits ------------------------------------------------------------------------------------


def test_line_at_the_limit_is_accepted() -> None:
    line = b"data: " + b"x" * 94
    assert len(line) == 100
    assert decode_whole(line + b"\n\n", max_line_bytes=100) == [ev("x" * 94)]
    assert decode_bytewise(line + b"\n\n", max_line_bytes=100) == [ev("x" * 94)]


def test_overlong_complete_line_raises_parse_error() -> None:
    with pytest.raises(ParseError, match="max_sse_line_bytes=100"):
        decode_whole(b"data: " + b"x" * 95 + b"\n\n", max_line_bytes=100)


def test_overlong_pending_line_raises_before_it_ends() -> None:
    decoder = SSEDecoder(max_line_bytes=100)
    decoder.feed(b"data: ok\n\n" + b"y" * 60)
    assert feeds_before_error(decoder, b"y") == 40
    # The buffered bytes were released.
    assert decoder.feed(b"\n\ndata: after\n\n") == [ev("after")]


def test_overlong_line_without_terminator_in_one_chunk_raises() -> None:
    with pytest.raises(ParseError):
        SSEDecoder(max_line_bytes=10).feed(b":" + b"c" * 10)


def test_overlong_line_fed_byte_by_byte_raises_at_the_limit() -> None:
    decoder = SSEDecoder(max_line_bytes=50)
    # The 51st byte is refused: the buffer never grows past the limit.
    assert feeds_before_error(decoder, b"z") == 50


def test_event_data_at_the_limit_is_accepted() -> None:
    # Data "aaaa\nbbbb" is 9 bytes: the joining newline counts.
    stream = b"data: aaaa\ndata: bbbb\n\n"
    assert decode_whole(stream, max_event_bytes=9) == [ev("aaaa\nbbbb")]
    with pytest.raises(ParseError, match="max_event_bytes=8"):
        decode_whole(stream, max_event_bytes=8)


def test_many_short_data_lines_hit_the_event_limit() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    # 1001 empty data lines make 1000 bytes of newlines; the next one is too many.
    assert feeds_before_error(decoder, b"data:\n") == 1001


def test_event_limit_counts_per_event() -> None:
    stream = b"data: 12345\n\n" * 20
    assert len(decode_whole(stream, max_event_bytes=5)) == 20


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
@pytest.mark.parametrize("name", ["max_line_bytes", "max_event_bytes"])
def test_limits_must_be_positive_integers(name: str, bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        SSEDecoder(**{name: bad})  # type: ignore[arg-type]


def test_long_line_fed_byte_by_byte_stays_linear() -> None:
    # 4 MiB in 1-byte chunks: linear work is ~4 million cheap feeds (seconds), while a
    # decoder that rescans or copies its buffer on each feed does ~10^13 byte
    # operations and trips this generous hang guard long before finishing.
    size = 4 * 1024 * 1024
    guard = time.monotonic() + 90
    decoder = SSEDecoder()
    feed = decoder.feed
    assert feed(b"data: ") == []
    byte = b"q"
    for done in range(0, size, 4096):
        if time.monotonic() > guard:
            pytest.fail(f"hang guard: only {done} of {size} bytes decoded")
        for _ in range(4096):
            feed(byte)
    events = feed(b"\n\n")
    assert len(events) == 1
    assert len(events[0].data) == size
    assert set(events[0].data) == {"q"}


# -- iter_sse_events ---------------------------------------------------------------------------


async def chunked(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await anyio.lowlevel.checkpoint()
        yield chunk


@pytest.mark.anyio
async def test_iter_sse_events_decodes_chunks_and_drops_the_unterminated_tail() -> None:
    source = chunked(b"event: data\ndata: [1", b"]\n\nevent: control\r", b"\ndata: {}\n\ndata: x")
    events = [event async for event in iter_sse_events(source)]
    assert events == [ev("[1]", "data"), ev("{}", "control")]


@pytest.mark.anyio
async def test_iter_sse_events_applies_limits() -> None:
    with pytest.raises(ParseError):
        async for _ in iter_sse_events(chunked(b"data: 0123456789\n\n"), max_line_bytes=8):
            pass


# -- control payloads --------------------------------------------------------------------------


def test_parse_control_reads_every_field() -> None:
    control = parse_control(
        '{"streamNextOffset":"0000000000000000_0000000000000005","streamCursor":"c1",'
        '"upToDate":true,"streamClosed":false,"extra":1}'
    )
    assert control == ControlEvent(
        next_offset="0000000000000000_0000000000000005",
        cursor="c1",
        up_to_date=True,
        closed=False,
    )


def test_parse_control_defaults_absent_flags() -> None:
    control = parse_control('{"streamNextOffset":"9_9","streamClosed":true}')
    assert (control.next_offset, control.cursor, control.up_to_date, control.closed) == (
        "9_9",
        None,
        False,
        True,
    )


def test_parse_control_accepts_json_spread_over_data_lines() -> None:
    assert parse_control('{\n"streamNextOffset":\n"1_2"}').next_offset == "1_2"


@pytest.mark.parametrize(
    "data",
    [
        "",
        "  \n",
        "{",
        '{"streamNextOffset":"1_2"',
        "not json",
        "[]",
        '"1_2"',
        "null",
        "5",
        "{}",
        '{"streamCursor":"c"}',
        '{"streamNextOffset":5}',
        '{"streamNextOffset":null}',
        '{"streamNextOffset":["1_2"]}',
        '{"streamNextOffset":""}',
        '{"streamNextOffset":"1_2","upToDate":"maybe"}',
        "[" * 5000,
    ],
)
def test_parse_control_rejects_bad_payloads_with_parse_error(data: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_control(data, offset="0000000000000000_0000000000000007")
    error = caught.value
    assert error.offset == "0000000000000000_0000000000000007"
    assert "0000000000000000_0000000000000007" in str(error)
    assert error.code == "PARSE_ERROR"


def test_parse_control_error_escapes_untrusted_text() -> None:
    with pytest.raises(ParseError) as caught:
        parse_control('{"streamNextOffset": 1, "x": "\x1b[31m\n"}')
    assert "\x1b" not in str(caught.value)
    assert caught.value.body is not None
    assert "\x1b" not in caught.value.body


# -- base64 payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", b""),
        ("aGVsbG8=", b"hello"),
        ("aGVs\nbG8=", b"hello"),
        ("aGVs\r\nbG8=\r\n", b"hello"),
        ("\r\naG\rVs\nbG8\r=", b"hello"),
        ("AAEC/w==", b"\x00\x01\x02\xff"),
        ("+/+/", b"\xfb\xff\xbf"),
    ],
)
def test_decode_base64_data(data: str, expected: bytes) -> None:
    assert decode_base64_data(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        "aGVsbG8",  # length not a multiple of 4
        "a",
        "aGVsbG8==",
        "aGVs bG8=",  # a space is not stripped
        "aGVs\tbG8=",
        "aGV*bG8=",
        "aGVsbG8-",  # URL-safe alphabet is not RFC 4648 section 4
        "aG==bG8=",  # padding in the middle
        "a===",
        "====",
        "aGVsbG\u00e9=",
    ],
)
def test_decode_base64_data_rejects_invalid(data: str) -> None:
    with pytest.raises(ParseError) as caught:
        decode_base64_data(data, offset="3_4")
    assert caught.value.offset == "3_4"
    assert "'3_4'" in str(caught.value)


# -- JSON payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("[]", []),
        ('[{"a":1}]', [{"a": 1}]),
        ('[{"a":1},{"b":2}]', [{"a": 1}, {"b": 2}]),
        ("[[1,2],[3]]", [[1, 2], [3]]),
        ("[[[1]]]", [[[1]]]),
        ('[\n"x",\n"\\u2028"\n]', ["x", "\u2028"]),
        ('  [1, "two", null, true]  ', [1, "two", None, True]),
    ],
)
def test_parse_json_data_returns_the_array_elements(data: str, expected: list[object]) -> None:
    assert parse_json_data(data) == expected


@pytest.mark.parametrize(
    "data", ["", "[", "[1,", "[1]]", '{"a":1}', '"text"', "1", "null", "[1] [2]", "[" * 5000]
)
def test_parse_json_data_rejects_invalid_and_non_arrays(data: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_json_data(data, offset="5_6")
    assert caught.value.offset == "5_6"
    assert "'5_6'" in str(caught.value)


# -- properties --------------------------------------------------------------------------------

_field_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=12,
)
_line_end = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A valid event stream (random endings, comments, ignored fields) and its events."""
    lines: list[str] = []
    expected: list[SSEEvent] = []
    for _ in range(draw(st.integers(0, 6))):
        event_type = draw(st.none() | _field_text)
        if event_type is not None:
            # As for data: with no separating space the value must not start with one.
            spaced = event_type.startswith(" ") or draw(st.booleans())
            lines.append(f"event: {event_type}" if spaced else f"event:{event_type}")
        data = draw(st.lists(_field_text, max_size=4))
        for value in data:
            if draw(st.booleans()):
                lines.append(f": {draw(_field_text)}")
            if draw(st.booleans()):
                lines.append(f"id: {draw(_field_text)}")
            # One space is always stripped; with no space the value must not start with one.
            spaced = value.startswith(" ") or draw(st.booleans())
            lines.append(f"data: {value}" if spaced else f"data:{value}")
        lines.append("")
        if data:
            expected.append(SSEEvent(event_type or "message", "\n".join(data)))
    if draw(st.booleans()):
        lines.append(f"data: {draw(_field_text)}")  # unterminated: never dispatched
    text = ""
    previous = ""
    for line in lines:
        end = draw(_line_end)
        if previous == "\r" and line == "" and end == "\n":
            end = "\r"  # CR then a blank LF-line would be one CRLF, not two line ends
        text += line + end
        previous = end
    prefix = BOM if draw(st.booleans()) else b""
    return prefix + text.encode("utf-8"), expected


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(event_streams(), st.lists(st.integers(min_value=0), max_size=30))
def test_any_split_decodes_to_the_same_events(
    case: tuple[bytes, list[SSEEvent]], cuts: list[int]
) -> None:
    stream, expected = case
    assert decode_whole(stream) == expected
    assert decode(split(stream, cuts)) == expected


_garbage = st.binary(max_size=400) | st.lists(
    st.sampled_from(
        [b"\r", b"\n", b"\r\n", b":", b" ", b"data", b"event", BOM, b"\xff", b"\xc3", b"x" * 7]
    ),
    max_size=120,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(_garbage, st.lists(st.integers(min_value=0), max_size=20))
def test_garbage_only_ever_raises_parse_error(stream: bytes, cuts: list[int]) -> None:
    limits = {"max_line_bytes": 16, "max_event_bytes": 24}
    try:
        whole: list[SSEEvent] | None = decode_whole(stream, **limits)
    except ParseError:
        whole = None
    try:
        pieces: list[SSEEvent] | None = decode(split(stream, cuts), **limits)
    except ParseError:
        pieces = None
    # Splitting never changes the outcome, errors included.
    assert pieces == whole
    for event in whole or []:
        assert len(event.data) <= limits["max_event_bytes"]
