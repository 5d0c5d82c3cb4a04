"""Server-sent events: an incremental decoder and the payload parsers of SSE reads.

The decoder follows the WHATWG event-stream parsing rules on raw bytes: lines
end at CR, LF or CRLF (and nowhere else, so U+0085/U+2028/U+2029 stay inside
data), each complete line is decoded as UTF-8 with replacement, and a blank
line dispatches the event. Work is linear in the input and memory is bounded
by ``max_line_bytes`` and ``max_event_bytes``; going past either raises
:class:`ParseError` rather than buffering without end.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import pydantic

from . import _protocol as p
from ._codec import loads_json
from ._errors import InvalidArgumentError, ParseError
from ._models import ControlEvent
from ._redact import excerpt

__all__ = [
    "SSEDecoder",
    "SSEEvent",
    "decode_base64_data",
    "iter_sse_events",
    "parse_control",
    "parse_json_data",
]

# Servers put a whole append on one data line, so a line may be as large as an
# event; room for the largest message base64-encoded (4/3 of its size).
DEFAULT_MAX_EVENT_BYTES = p.MAX_MESSAGE_BYTES * 3 // 2
DEFAULT_MAX_LINE_BYTES = DEFAULT_MAX_EVENT_BYTES

_BOM = b"\xef\xbb\xbf"
_CR = b"\r"
_LF = b"\n"
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched server-sent event.

    ``event`` is ``"message"`` when the event had no ``event:`` field; ``data``
    is its ``data:`` lines joined with ``"\\n"``.

    Example::

        SSEEvent(event="control", data='{"streamNextOffset":"0_5"}')
    """

    event: str
    data: str


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder: feed bytes, get complete events.

    Chunks may split anything (a line ending, a multi-byte character, the BOM);
    the result is the same as feeding the whole stream at once. An event still
    open when :meth:`close` is called is dropped, as the SSE spec requires.

    Example::

        decoder = SSEDecoder()
        events = decoder.feed(b"event: control\\ndata: {}\\n")   # [] (not ended yet)
        events = decoder.feed(b"\\n")                            # [SSEEvent("control", "{}")]
        decoder.close()
    """

    __slots__ = (
        "_after_cr",
        "_at_start",
        "_data",
        "_data_size",
        "_event",
        "_max_event",
        "_max_line",
        "_partial",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        for name, value in (
            ("max_line_bytes", max_line_bytes),
            ("max_event_bytes", max_event_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(
                    f"{name} must be a positive integer, not {value!r}", field=name
                )
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # Bytes of the line not yet ended; only ever appended to, so a long line
        # arriving in tiny chunks costs linear time.
        self._partial = bytearray()
        # The last chunk ended in CR: an LF opening the next chunk is that CRLF's tail.
        self._after_cr = False
        # Still inside the first three bytes, where a BOM may be (possibly split).
        self._at_start = True
        self._event: str | None = None
        self._data: list[bytes] = []
        # Size the joined data would have: values plus the "\n" between them.
        self._data_size = -1

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode the next chunk; return the events it completed (often none)."""
        if not chunk:
            return []
        if self._at_start:
            head = bytes(self._partial) + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._partial[:] = head
                return []
            self._at_start = False
            self._partial.clear()
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._after_cr:
            self._after_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if _CR in chunk:
            # One terminator for all three endings; a CR closing the chunk has
            # ended its line already, and its LF (if any) is dropped next time.
            self._after_cr = chunk[-1] == 0x0D
            chunk = chunk.replace(_CRLF, _LF).replace(_CR, _LF)
        elif _LF not in chunk:
            self._partial += chunk
            if len(self._partial) > self._max_line:
                self._fail_line(len(self._partial))
            return []
        lines = chunk.split(_LF)
        rest = lines.pop()
        if self._partial:
            self._partial += lines[0]
            lines[0] = bytes(self._partial)
        self._partial[:] = rest
        if len(rest) > self._max_line:
            self._fail_line(len(rest))
        return self._lines(lines)

    def close(self) -> list[SSEEvent]:
        """End of input: finish the pending line and drop the unterminated event.

        Always returns ``[]`` (an event needs a blank line to be dispatched) but
        still applies the limits to what was pending, and resets the decoder.
        """
        pending = bytes(self._partial)
        self._partial.clear()
        if pending:
            self._lines([pending])
        self._reset_event()
        self._after_cr = False
        self._at_start = True
        return []

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        max_line = self._max_line
        for line in lines:
            if not line:
                if self._data:
                    data = b"\n".join(self._data).decode("utf-8", "replace")
                    events.append(SSEEvent(self._event or "message", data))
                    self._data = []
                    self._data_size = -1
                self._event = None
                continue
            if len(line) > max_line:
                self._fail_line(len(line))
            colon = line.find(b":")
            if colon == 0:
                continue  # a comment
            if colon < 0:
                field, value = line, b""
            else:
                field = line[:colon]
                # Exactly one optional space goes; a second one is data.
                start = colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1
                value = line[start:]
            if field == b"data":
                self._data_size += len(value) + 1
                if self._data_size > self._max_event:
                    size = self._data_size
                    self._reset_event()
                    raise ParseError(
                        f"SSE event data exceeds max_event_bytes={self._max_event}"
                        f" (at least {size} bytes)"
                    )
                self._data.append(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
            # Other fields (id, retry, unknown) carry nothing the reader uses.
        return events

    def _reset_event(self) -> None:
        self._event = None
        self._data = []
        self._data_size = -1

    def _fail_line(self, size: int) -> None:
        # Drop what was buffered so a caller that catches this holds no memory.
        self._partial = bytearray()
        self._reset_event()
        raise ParseError(
            f"SSE line exceeds max_sse_line_bytes={self._max_line} (at least {size} bytes)"
        )


async def iter_sse_events(chunks: AsyncIterable[bytes], **limits: int) -> AsyncIterator[SSEEvent]:
    """Decode an async iterable of byte chunks into :class:`SSEEvent` objects.

    ``limits`` are the :class:`SSEDecoder` keyword arguments.

    Example::

        async with client.stream("GET", url) as response:
            async for event in iter_sse_events(response.aiter_bytes()):
                print(event.event, event.data)
    """
    decoder = SSEDecoder(**limits)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


def _where(offset: str | None) -> str:
    return f" at offset {offset!r}" if offset is not None else ""


def parse_control(data: str, *, offset: str | None = None) -> ControlEvent:
    """Parse the JSON payload of a ``control`` event.

    ``offset`` is where the reader was, for the error message. Empty or malformed
    JSON, a non-object, or a missing, non-string or empty ``streamNextOffset``
    raises :class:`ParseError`.

    Example::

        parse_control('{"streamNextOffset":"0_5","upToDate":true}').up_to_date   # True
    """
    if not data.strip():
        raise ParseError(f"empty SSE control event{_where(offset)}", offset=offset)
    try:
        control = ControlEvent.model_validate_json(data)
    except (pydantic.ValidationError, ValueError) as exc:
        problems = _describe(exc)
        raise ParseError(
            f"malformed SSE control event{_where(offset)}: {problems}",
            offset=offset,
            body=excerpt(data),
        ) from exc
    if not control.next_offset:
        raise ParseError(
            f"SSE control event{_where(offset)} has an empty streamNextOffset",
            offset=offset,
            body=excerpt(data),
        )
    return control


def _describe(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        # Location and reason only: pydantic's own text would echo the input.
        return "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'payload'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
    return excerpt(str(exc))


def decode_base64_data(data: str, *, offset: str | None = None) -> bytes:
    """Decode the data of one base64-encoded SSE event (binary streams).

    Line breaks are removed first (the server may wrap); the rest must be strict
    RFC 4648 base64, so ``""`` is ``b""`` and anything else invalid raises
    :class:`ParseError`.

    Example::

        decode_base64_data("aGVs\\nbG8=")   # b"hello"
    """
    text = data.replace("\r", "").replace("\n", "")
    if len(text) % 4:
        raise ParseError(
            f"invalid base64 in SSE data event{_where(offset)}: length {len(text)}"
            " is not a multiple of 4",
            offset=offset,
            body=excerpt(text),
        )
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParseError(
            f"invalid base64 in SSE data event{_where(offset)}: {exc}",
            offset=offset,
            body=excerpt(text),
        ) from exc


def parse_json_data(data: str, *, offset: str | None = None) -> list[Any]:
    """Parse the data of one JSON-mode SSE event: a JSON array, returned as its elements.

    Example::

        parse_json_data('[{"a":1},\\n[2,3]]')   # [{"a": 1}, [2, 3]]
    """
    try:
        value = loads_json(data)
    except ValueError as exc:
        raise ParseError(
            f"invalid JSON in SSE data event{_where(offset)}: {excerpt(str(exc))}",
            offset=offset,
            body=excerpt(data),
        ) from exc
    if not isinstance(value, list):
        raise ParseError(
            f"SSE data event{_where(offset)} is JSON {type(value).__name__}, not an array",
            offset=offset,
            body=excerpt(data),
        )
    return value
