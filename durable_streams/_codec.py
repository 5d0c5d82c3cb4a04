"""Append payloads (one message per call, batches as JSON arrays) and JSON read bodies."""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic_core

from . import _protocol as p
from ._errors import EmptyAppendError, InvalidArgumentError

__all__ = [
    "JsonArraySplitter",
    "encode_item",
    "items_of",
    "join_items",
    "json_array",
    "json_error",
    "loads_json",
    "loads_json_array",
]

#: A streamed JSON body is cut into items each time this much more has arrived.
SPLIT_STEP_BYTES = 1024 * 1024
#: Default bound on the nesting of a JSON item that is still arriving.
MAX_JSON_DEPTH = 128
_NOT_STRUCTURAL = bytes(range(256)).translate(None, b'[]{}"')
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_STEPS = bytes.maketrans(b"[]", b"\x02\x00")


#: ``nesting_depth`` reduces its input this many bytes at a time (bounded extra memory).
DEPTH_WINDOW_BYTES = 1024 * 1024


def nesting_depth(data: bytes | bytearray) -> int:
    """How deeply the brackets of (possibly incomplete) JSON text nest, outside strings.

    Runs at C speed on bytes methods, a window at a time (so the copies are of a
    window, not of the text): escaped backslashes and quotes are dropped, then
    everything but brackets and quotes, then strings (an unterminated one hides
    what follows it), then matched pairs while that shrinks the text.

    Example::

        nesting_depth(b'[{"a": "[[["}, [1, [2]]')   # 3
    """
    view = memoryview(data)
    parts: list[bytes] = []
    carry = b""  # a backslash that escapes the first byte of the next window
    in_string = False
    for start in range(0, len(view), DEPTH_WINDOW_BYTES):
        window = carry + view[start : start + DEPTH_WINDOW_BYTES].tobytes()
        run = len(window) - len(window.rstrip(b"\\"))
        carry = b"\\" if run % 2 else b""
        if carry:
            window = window[:-1]
        text = window.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
        text = text.replace(b'""', b"")
        if b'"' in text:
            pieces = text.split(b'"')
            outside = b"".join(pieces[1::2] if in_string else pieces[0::2])
            in_string = in_string != (len(pieces) % 2 == 0)
            text = outside
        elif in_string:
            text = b""
        parts.append(text.translate(_ONE_BRACKET))
    text = b"".join(parts)
    while len(text) > 4096:
        shorter = text.replace(b"[]", b"")
        if len(shorter) == len(text):
            break
        text = shorter
    if not text:
        return 0
    # Depth after each bracket: opens so far minus closes so far (2 per open, minus 1 each).
    steps = itertools.accumulate(text.translate(_STEPS))
    deepest: int = max(map(operator.sub, steps, itertools.count(1)))
    return max(0, deepest)


_WHITESPACE = b" \t\r\n"


def items_of(items: object) -> list[Any]:
    """The items given to an ``append_many``-style call, as a list.

    A ``str``, bytes or mapping is one value, not a group: iterating it would append
    its characters, bytes or keys one by one, so it is refused, as is a non-iterable.

    Example::

        items_of(({"n": 1}, {"n": 2}))   # [{'n': 1}, {'n': 2}]
    """
    if isinstance(items, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(
        items, Iterable
    ):
        raise InvalidArgumentError(
            f"append_many takes an iterable of items, not {type(items).__name__}; "
            "use append() for one message",
            field="items",
        )
    return list(items)


def encode_item(value: object, *, json_mode: bool) -> bytes:
    """Encode one append item as the bytes of one message.

    On JSON streams ``bytes``/``str`` are taken as already-serialised JSON text
    (not parsed again: the fast path) and every other value is serialised, so a
    list is *one* message whose value is a list. On other streams only
    ``bytes``-like values and ``str`` (UTF-8) are accepted.

    Example::

        encode_item({"a": 1}, json_mode=True)   # b'{"a":1}'
        encode_item("héllo", json_mode=False)   # b'h\\xc3\\xa9llo'
    """
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, (bytearray, memoryview)):
        data = bytes(value)
    elif json_mode:
        try:
            data = pydantic_core.to_json(value)
        except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
            raise InvalidArgumentError(
                f"cannot serialise {type(value).__name__} as JSON: {exc}", field="data"
            ) from exc
        if (b"NaN" in data or b"Infinity" in data) and _has_non_finite(data):
            raise InvalidArgumentError(
                "cannot serialise NaN or infinity: JSON has no such numbers", field="data"
            )
        return data
    else:
        raise InvalidArgumentError(
            f"a non-JSON stream takes bytes or str, not {type(value).__name__}", field="data"
        )
    if not data:
        raise EmptyAppendError("cannot append empty data")
    return data


def _has_non_finite(data: bytes) -> bool:
    """Whether serialised JSON holds NaN/Infinity literals (not merely those words in strings)."""

    def reject(constant: str) -> object:
        raise ValueError(constant)

    try:
        json.loads(data, parse_constant=reject)
    except ValueError:
        return True
    return False


def json_error(item: bytes) -> str | None:
    """Why ``item`` is not one JSON value a server would accept (None if it is).

    Example::

        json_error(b'{"a": 1}')   # None
        json_error(b"{")          # "Expecting property name enclosed in double quotes: ..."
    """

    def reject(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    try:
        json.loads(item.decode("utf-8"), parse_constant=reject)
    except RecursionError:
        return None  # too deep for Python, maybe not for the server: not provably bad
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        return str(exc)
    return None


def json_array(messages: Iterable[bytes]) -> bytes:
    """A JSON-mode request body: the serialised messages as one array."""
    return b"[" + b",".join(messages) + b"]"


def join_items(messages: Iterable[bytes], *, json_mode: bool) -> bytes:
    """The request body for several encoded items: a JSON array, or concatenated bytes."""
    return json_array(messages) if json_mode else b"".join(messages)


def loads_json(data: bytes | bytearray | str) -> Any:
    """Parse JSON text (bytes must be UTF-8); every failure is a ``ValueError``.

    The one JSON decoder of read paths (HTTP bodies and SSE events). Unlike
    ``json.loads(bytes)`` it never guesses UTF-16/32 or lets lone surrogates
    through, and a value nested too deeply for the parser raises
    ``ValueError`` instead of ``RecursionError``.
    """
    try:
        return json.loads(data if isinstance(data, str) else data.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply for the parser") from None


def loads_json_array(data: bytes) -> list[Any]:
    """A whole JSON array body (``[]`` when blank); anything else is a ``ValueError``."""
    items = loads_json(data) if data.strip(_WHITESPACE) else []
    if not isinstance(items, list):
        raise ValueError("the body is not a JSON array")
    return items


class JsonArraySplitter:
    """Parses a JSON array arriving in chunks, handing out its items as they complete.

    Bodies smaller than ``step`` are parsed once, at the end. Past that, each
    time ``step`` more bytes have arrived, the complete items are parsed and
    handed out. The buffer is cut at the last comma that precedes the start of
    an item shaped like the first one (``,{"id":`` for objects), and ``[`` +
    the part before + ``]`` parsed in one call: that succeeds only when the
    comma separates top-level items (a comma in a string leaves the string
    open, one in a nested value leaves a bracket open). When that guess fails,
    the items are scanned one by one. Memory is about ``step`` plus the largest
    item; an item (or non-JSON input) over ``max_item_bytes``, or an item that
    is still arriving and nests deeper than ``max_depth``, raises ``ValueError``
    as soon as it is seen, as does anything that is not one JSON array. The
    buffer is one ``bytearray`` grown in place: memory stays near one copy.

    Example::

        splitter = JsonArraySplitter(step=4)
        splitter.feed(b'[{"a":1},') + splitter.feed(b'{"b":2}]') + splitter.close()
        # [{'a': 1}, {'b': 2}]
    """

    __slots__ = (
        "_cut_before",
        "_item_start",
        "_max_depth",
        "_max_item",
        "_next_attempt",
        "_opened",
        "_parts",
        "_size",
        "_step",
    )

    def __init__(
        self,
        *,
        step: int = SPLIT_STEP_BYTES,
        max_item_bytes: int = p.MAX_MESSAGE_BYTES,
        max_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self._parts = bytearray()
        self._size = 0
        self._step = step
        self._max_item = max_item_bytes
        self._max_depth = max_depth
        self._next_attempt = step
        self._opened = False  # the leading "[" was consumed
        self._cut_before = False  # items were cut off: what remains must hold one
        self._item_start = b","  # a comma and how the first item starts

    def feed(self, chunk: bytes) -> list[Any]:
        """Take the next chunk; return the items it completed (often none)."""
        self._parts += chunk
        self._size += len(chunk)
        if self._size < self._next_attempt:
            return []
        buffer = self._take()
        if not self._opened:
            buffer = buffer.lstrip(_WHITESPACE)
            if not buffer:  # only whitespace so far
                self._next_attempt = self._step
                return []
            if buffer[:1] != b"[":
                raise ValueError("the body is not a JSON array")
            del buffer[:1]
            self._opened = True
            self._item_start = _item_start(buffer)
        items, used = self._cut(buffer)
        if items and used > self._max_item and _has_item_over(buffer[:used], self._max_item):
            raise ValueError(f"an item is larger than max_message_bytes={self._max_item}")
        if items:
            self._cut_before = True
            del buffer[:used]
            self._next_attempt = len(buffer) + self._step
        else:
            if len(buffer) > self._max_item:
                raise ValueError(f"an item is larger than max_message_bytes={self._max_item}")
            if nesting_depth(buffer) >= self._max_depth:
                raise ValueError(f"an item nests deeper than max_json_depth={self._max_depth}")
            # One item spans the buffer: retry once it has doubled (so the work stays
            # linear however large the item is), and at the latest just past the limit.
            self._next_attempt = min(
                max(2 * len(buffer), len(buffer) + self._step), self._max_item + 1
            )
        self._parts = buffer
        self._size = len(buffer)
        return items

    def close(self) -> list[Any]:
        """The body ended: return the remaining items (``[]`` for an empty body)."""
        buffer = self._take()
        if not self._opened:
            items = loads_json_array(bytes(buffer))
            if len(buffer) > self._max_item:
                self._check_sizes(buffer.strip(_WHITESPACE)[1:])
            return items
        if len(buffer) > self._max_item:
            self._check_sizes(buffer)
        buffer[:0] = b"["
        items = loads_json(buffer)
        if self._cut_before and not items:
            raise ValueError("a trailing comma before ]")
        assert isinstance(items, list)  # "[" + text parses as an array or not at all
        return items

    def _check_sizes(self, rest: bytes | bytearray) -> None:
        """``rest``: the items of a whole array, then its ``]`` (already parsed as JSON)."""
        body = rest.rstrip(_WHITESPACE)
        if body.endswith(b"]") and _has_item_over(body[:-1], self._max_item):
            raise ValueError(f"an item is larger than max_message_bytes={self._max_item}")

    def _cut(self, buffer: bytearray) -> tuple[list[Any], int]:
        """The complete items at the start of ``buffer`` and the bytes they (and a comma) use."""
        cut = buffer.rfind(self._item_start)
        if cut < 0:
            cut = buffer.rfind(b",")
        if cut < 0:
            return [], 0
        try:
            items = loads_json(b"".join((b"[", memoryview(buffer)[:cut], b"]")))
        except ValueError:
            return _scan_items(buffer)  # the comma was inside an item
        if not items:
            raise ValueError("a comma with no item before it")
        return items, cut + 1

    def _take(self) -> bytearray:
        buffer = self._parts
        self._parts = bytearray()
        self._size = 0
        return buffer


_decoder = json.JSONDecoder()


def _item_start(buffer: bytes | bytearray) -> bytes:
    """A comma and the first item's first bytes (``,{"key":`` for an object): a likely separator."""
    head = buffer.lstrip(_WHITESPACE)[:64]
    if head.startswith(b'{"'):
        colon = head.find(b'":')
        if colon > 0:
            return bytes(b"," + head[: colon + 2])
    return bytes(b"," + head[:1])


def _has_item_over(region: bytes | bytearray, limit: int) -> bool:
    """Whether an item of ``region`` (complete, comma-separated array items) is over ``limit``
    bytes. The bulk parse does not see item boundaries: only regions larger than the limit
    are scanned, so with the default limit this never runs."""
    try:
        text = bytes(region).decode("utf-8")
    except UnicodeDecodeError:
        return False  # not JSON at all: the parse reports it
    end = len(text)
    position = 0
    while position < end:
        while position < end and text[position] in " \t\r\n,":
            position += 1
        if position >= end:
            return False
        try:
            _, after = _decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            return False  # the parse reports it
        span = after - position  # characters: each is 1 to 4 bytes
        if span > limit or (span * 4 > limit and len(text[position:after].encode()) > limit):
            return True
        position = after
    return False


def _scan_items(buffer: bytes | bytearray) -> tuple[list[Any], int]:
    """Items parsed one by one up to the last comma: slower, but always finds every boundary."""
    last_comma = buffer.rfind(b",")
    text = buffer[:last_comma].decode("utf-8")  # a comma never splits a UTF-8 character
    items: list[Any] = []
    end = len(text)
    position = 0
    while True:
        while position < end and text[position] in " \t\r\n":
            position += 1
        try:
            item, after = _decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            break  # an incomplete item (or bad JSON, which close() will report)
        while after < end and text[after] in " \t\r\n":
            after += 1
        if after < end and text[after] != ",":
            break
        items.append(item)
        position = after + 1
        if after == end:
            return items, last_comma + 1
    if not items:
        return [], 0
    # ``position`` is just past the comma after the last complete item.
    return items, len(text[:position].encode("utf-8"))
