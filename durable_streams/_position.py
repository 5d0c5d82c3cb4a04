"""Where a read is: the offset to continue from, the cursor to echo, tail and EOF.

One record serves three places: what a response (or an SSE control event) says
about where the stream stands after it, where the read loop sends its next
request, and what a :class:`~durable_streams.StreamResponse` has handed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._errors import InvalidOffsetError
from ._redact import excerpt

__all__ = ["Position", "PositionUnit", "ReadPosition"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadPosition:
    """A read's position: ``offset`` to resume from, ``cursor`` to echo, and its state.

    ``up_to_date`` means the data up to ``offset`` reached the stream's tail;
    ``closed`` that the stream is closed there (EOF).
    """

    offset: str
    cursor: str | None = None
    up_to_date: bool = False
    closed: bool = False

    def advance(self, end: ReadPosition) -> ReadPosition:
        """The position after data that ends at ``end`` (a response keeps the last cursor
        when it carries none)."""
        if end.cursor is None and self.cursor is not None:
            return ReadPosition(
                offset=end.offset, cursor=self.cursor, up_to_date=end.up_to_date, closed=end.closed
            )
        return end


PositionUnit = Literal["items", "bytes"]
"""What a :class:`Position`'s ``skip`` counts: JSON items, or bytes of the body."""

_PREFIX = "dsp1"


@dataclass(frozen=True, slots=True)
class Position:
    """A resumable place in a stream, finer than an offset: an offset plus what to skip.

    Servers give offsets only where a response ends, and one response may hold a
    whole backlog. A position is the offset where a response began (``offset``)
    plus how much of that response was already handed out (``skip``: items on
    JSON reads, bytes otherwise). Reading from a position repeats nothing and
    skips nothing: an append-only stream returns the same data from the same
    offset, however the server splits its responses. A plain offset is a
    position with nothing to skip.

    ``str(position)`` is a form for storage; :meth:`parse` reads it back. A
    plain string is always a protocol offset (offsets are opaque, so the SDK
    never guesses): store positions with ``str()`` and load them with
    ``Position.parse()``.

    Example::

        async for item in res.iter_json():
            handle(item)
            db.save(str(res.position))
        ...
        res = await handle.stream(offset=Position.parse(db.load()))
    """

    offset: str
    skip: int = 0
    unit: PositionUnit = "items"

    def __post_init__(self) -> None:
        if not isinstance(self.offset, str) or not self.offset:
            raise _invalid("a position's offset must be a non-empty string")
        if isinstance(self.skip, bool) or not isinstance(self.skip, int) or self.skip < 0:
            raise _invalid("a position's skip must be a non-negative integer")
        if self.unit not in ("items", "bytes"):
            raise _invalid("a position's unit must be 'items' or 'bytes'")
        if self.skip == 0 and self.unit != "items":
            object.__setattr__(self, "unit", "items")  # nothing to skip: the unit is moot

    def __str__(self) -> str:
        return f"{_PREFIX}:{self.unit}:{self.skip}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read a position back from its ``str()`` form.

        Raises :class:`InvalidOffsetError` for anything else, plain offsets included.

        Example::

            position = Position.parse("dsp1:items:3:0000000000000000_0000000000000042")
            assert position.skip == 3
        """
        if not isinstance(text, str):
            raise _invalid(f"a stored position must be a str, not {type(text).__name__}")
        parts = text.split(":", 3)
        if len(parts) != 4 or parts[0] != _PREFIX:
            raise _invalid(
                f"not a stored position: {excerpt(text)} (expected the str() of a Position; "
                "a plain offset is passed as offset=... directly)"
            )
        _, unit, skip, offset = parts
        if unit not in ("items", "bytes") or not skip.isdigit() or not skip.isascii() or not offset:
            raise _invalid(f"malformed stored position: {excerpt(text)}")
        if len(skip) > 1 and skip.startswith("0"):
            raise _invalid(f"malformed stored position: {excerpt(text)}")
        return cls(offset, int(skip), "items" if unit == "items" else "bytes")


def _invalid(message: str) -> InvalidOffsetError:
    return InvalidOffsetError(message)
