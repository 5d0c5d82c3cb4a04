"""Units: what one read response delivers, decoded from HTTP bodies and SSE events.

A unit is the data of one catch-up or long-poll response, or of one SSE
data+control group, with the offset to resume from. The read loop
(``_read_loop.py``) decides which request to send and how to move on from a
unit; this module only decodes: response headers into read progress, bodies
(whole, or chunks as they arrive) and SSE groups into units. It does no I/O:
body chunks come from :mod:`._transport`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from . import _protocol as p
from ._codec import MAX_JSON_DEPTH, JsonArraySplitter, loads_json_array
from ._errors import ParseError, ServerError
from ._limits import ReadLimits
from ._position import ReadPosition
from ._redact import excerpt
from ._sse import decode_base64_data, parse_control, parse_json_data

__all__ = [
    "Skip",
    "Unit",
    "byte_groups",
    "check_progress",
    "check_sse_data",
    "invalid_json",
    "is_event_stream",
    "json_item_groups",
    "parse_json_body",
    "partial",
    "response_end",
    "sse_unit",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unit:
    """What one response (or one SSE data+control group) delivered.

    ``data`` holds the bytes (None when only ``items`` are known), ``items``
    the messages of a JSON stream (None for byte and text streams, and for
    JSON bodies handed out as bytes). ``end`` is where the read is after the
    unit; it is None for a partial unit (part of a body handed out as it
    arrives): only a response's last unit carries it.
    """

    data: bytes | None
    items: list[Any] | None
    end: ReadPosition | None

    @property
    def has_data(self) -> bool:
        if self.items is not None:
            return bool(self.items)
        return bool(self.data)

    @property
    def size(self) -> int:
        """Items of a JSON unit, else bytes: what a retry of the response must skip."""
        if self.items is not None:
            return len(self.items)
        return len(self.data or b"")


def partial(data: bytes | None = None, items: list[Any] | None = None) -> Unit:
    """A unit of part of a response: no position until the response ends."""
    return Unit(data=data, items=items, end=None)


def response_end(response: httpx.Response, *, offset: str, where: str) -> ReadPosition:
    """Where a catch-up/long-poll response leaves the read, from its headers."""
    headers = response.headers
    next_offset = headers.get(p.STREAM_NEXT_OFFSET)
    if not next_offset:
        raise ParseError(
            f"read response from {where} has no Stream-Next-Offset header",
            offset=offset,
            status=response.status_code,
            url=response.request.url,
        )
    closed = p.flag(headers.get(p.STREAM_CLOSED))
    return ReadPosition(
        offset=next_offset,
        cursor=headers.get(p.STREAM_CURSOR),
        up_to_date=closed or p.flag(headers.get(p.STREAM_UP_TO_DATE)),
        closed=closed,
    )


def check_progress(unit: Unit, response: httpx.Response, *, offset: str, where: str) -> None:
    """Refuse "nothing, not caught up, same offset": a server answering that would spin us."""
    end = unit.end
    if end is None or unit.has_data or end.up_to_date or end.closed:
        return
    if end.offset == offset:
        raise ServerError(
            f"read from {where} made no progress at offset {excerpt(offset)}",
            status=response.status_code,
            url=response.request.url,
        )


def invalid_json(exc: ValueError, *, offset: str, where: str, url: str) -> ParseError:
    """The error for a JSON stream's response body that is not one JSON array."""
    return ParseError(
        f"invalid JSON in read response at offset {excerpt(offset)} from {where}: {exc}",
        offset=offset,
        url=url,
    )


def parse_json_body(body: bytes, *, offset: str, where: str, url: str) -> list[Any]:
    """The messages of a JSON stream's response body (a JSON array)."""
    try:
        return loads_json_array(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, ...
        raise invalid_json(exc, offset=offset, where=where, url=url) from None


class Skip:
    """What of a response's start is not handed out again: it was handed out before.

    A retried response, or the first response read from a stored
    :class:`~durable_streams.Position`, starts at an offset whose first items
    (or bytes) the caller already has. ``remaining`` counts down as they are
    dropped; what is left once a response ended carries over to the next one
    (servers may split responses differently from one read to the next).
    """

    __slots__ = ("remaining",)

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def items(self, items: list[Any]) -> list[Any]:
        if not self.remaining:
            return items
        dropped = min(self.remaining, len(items))
        self.remaining -= dropped
        return items[dropped:]

    def data(self, data: bytes) -> bytes:
        if not self.remaining:
            return data
        dropped = min(self.remaining, len(data))
        self.remaining -= dropped
        return data[dropped:]

    def unit(self, unit: Unit) -> Unit:
        """``unit`` without what is skipped: items of a JSON unit, else bytes."""
        if not self.remaining:
            return unit
        if unit.items is not None:
            return replace(unit, items=self.items(unit.items))
        return replace(unit, data=self.data(unit.data or b""))


async def byte_groups(
    chunks: AsyncIterator[bytes], *, skip: Skip
) -> AsyncGenerator[tuple[Unit, bool], None]:
    """A body's bytes as they arrive, in ``(partial unit, last)`` groups.

    The bytes ``skip`` covers are dropped. One part is held back so the last
    (``last=True``, possibly empty) still carries data when the body has any:
    only it comes with the new offset.
    """
    held: bytes | None = None
    async for chunk in chunks:
        chunk = skip.data(chunk)
        if not chunk:
            continue
        if held is not None:
            yield partial(data=held), False
        held = chunk
    yield partial(data=held or b""), True


async def json_item_groups(
    chunks: AsyncIterator[bytes],
    *,
    skip: Skip,
    offset: str,
    where: str,
    url: str,
    max_item_bytes: int = p.MAX_MESSAGE_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> AsyncGenerator[tuple[Unit, bool], None]:
    """A JSON body's items as they parse, in ``(partial unit, last)`` groups (bounded memory).

    The items ``skip`` covers are dropped: a retried response starts at the same
    offset with the same items. The last group (``last=True``) comes once the
    body has ended, possibly empty.
    """
    splitter = JsonArraySplitter(max_item_bytes=max_item_bytes, max_depth=max_depth)
    async for chunk in chunks:
        try:
            items = skip.items(splitter.feed(chunk))
        except ValueError as exc:
            raise invalid_json(exc, offset=offset, where=where, url=url) from None
        if items:
            yield partial(items=items), False
    try:
        items = skip.items(splitter.close())
    except ValueError as exc:
        raise invalid_json(exc, offset=offset, where=where, url=url) from None
    yield partial(items=items), True


def sse_unit(
    pending: list[str], control_data: str, *, base64: bool, json_mode: bool, offset: str
) -> Unit:
    """The unit of an SSE group: the ``data`` events before a ``control`` event, and it."""
    control = parse_control(control_data, offset=offset)
    data: bytes | None
    items: list[Any] | None
    if base64:
        data = b"".join(decode_base64_data(part, offset=offset) for part in pending)
        items = None
    elif json_mode:
        data = None
        items = [item for part in pending for item in parse_json_data(part, offset=offset)]
    else:
        data = "".join(pending).encode("utf-8")
        items = None
    end = ReadPosition(
        offset=control.next_offset,
        cursor=control.cursor,
        up_to_date=control.up_to_date or control.closed,  # [ref] omits upToDate at EOF
        closed=control.closed,
    )
    return Unit(data=data, items=items, end=end)


def check_sse_data(
    data: str, *, base64: bool, json_mode: bool, limits: ReadLimits, offset: str, url: str
) -> None:
    """Refuse an SSE ``data`` event holding a message over ``max_message_bytes``.

    On byte and text streams the event is the message (base64 shrinks to 3/4);
    on JSON streams the event is an array of messages, each within the limit.
    """
    limit = limits.max_message_bytes
    # str.isascii() is O(1): only other text is encoded to count its bytes.
    size = len(data) if data.isascii() else len(data.encode("utf-8"))
    if base64:
        size = size * 3 // 4
    if size <= limit:
        return
    if json_mode and not base64:
        # Rare (an event past the limit): parse it to measure each message as sent.
        for item in parse_json_data(data, offset=offset):
            size = len(json.dumps(item, ensure_ascii=False).encode("utf-8"))
            if size > limit:
                break
        else:
            return  # the event is large, its messages are not
    raise ParseError(
        f"SSE data event at offset {excerpt(offset)} holds a message of {size} bytes, "
        f"over max_message_bytes={limit}",
        offset=offset,
        url=url,
    )


def is_event_stream(response: httpx.Response) -> bool:
    return p.media_type(response.headers.get(p.CONTENT_TYPE)) == p.EVENT_STREAM_MEDIA_TYPE
