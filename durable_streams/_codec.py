"""Encoding of append payloads: one message per call, batches as JSON arrays."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pydantic_core

from ._errors import EmptyAppendError, InvalidArgumentError

__all__ = ["encode_item", "join_items", "json_array"]


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


def json_array(messages: Iterable[bytes]) -> bytes:
    """A JSON-mode request body: the serialised messages as one array."""
    return b"[" + b",".join(messages) + b"]"


def join_items(messages: Iterable[bytes], *, json_mode: bool) -> bytes:
    """The request body for several encoded items: a JSON array, or concatenated bytes."""
    return json_array(messages) if json_mode else b"".join(messages)
