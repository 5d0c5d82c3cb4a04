"""``ReadLimits``: how much untrusted data a read may hold, nest or inflate."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from . import _protocol as p
from ._errors import InvalidArgumentError, invalid_options

__all__ = ["DEFAULT_READ_LIMITS", "ReadLimits"]

MIB = 1024 * 1024


class ReadLimits(BaseModel):
    """Bounds on what a read holds in memory, so a buggy or hostile server cannot exhaust it.

    - ``max_body_bytes`` (64 MiB): decoded data held at once by one batch
      (``async for batch in res``, ``subscribe_*``) and in all by
      ``body()``/``text()``/``json()``. Larger reads raise :class:`ParseError`
      naming the limit; ``iter_bytes()``/``iter_json()`` stream any size.
    - ``max_message_bytes`` (64 MiB): one message: a JSON item, an SSE event.
    - ``max_sse_line_bytes`` (96 MiB): one SSE line (a 64 MiB message, base64).
    - ``max_json_depth`` (128): nesting of a JSON item that is still arriving.
    - ``max_decompression_ratio`` (1000): decoded bytes per compressed byte of a
      gzip/deflate body, checked once a response decoded more than
      ``max_body_bytes`` (any ratio is fine within that; the body is inflated in
      256 KiB steps). Deflate's own maximum is about 1032, reached only by long
      runs of one byte (a gzip bomb); ordinary data compresses 3-30x.

    Set them on the handle (``StreamHandle(url, limits=ReadLimits(...))``) or per
    read (``handle.stream(..., limits=...)``).

    Example::

        limits = ReadLimits(max_body_bytes=256 * 1024 * 1024)
        handle = StreamHandle(url, limits=limits)
        res = await handle.stream(limits=limits.model_copy(update={"max_json_depth": 32}))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=64 * MIB, ge=1)
    max_message_bytes: int = Field(default=p.MAX_MESSAGE_BYTES, ge=1)
    max_sse_line_bytes: int = Field(default=p.MAX_MESSAGE_BYTES * 3 // 2, ge=1)
    max_json_depth: int = Field(default=128, ge=1, le=900)
    max_decompression_ratio: float = Field(default=1000.0, ge=1.0, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise invalid_options("ReadLimits", exc) from None


DEFAULT_READ_LIMITS = ReadLimits()


def check_limits(value: object) -> ReadLimits | None:
    if value is None or isinstance(value, ReadLimits):
        return value
    raise InvalidArgumentError("limits must be a ReadLimits", field="limits")
