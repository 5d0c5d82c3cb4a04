"""Where a read is: the offset to continue from, the cursor to echo, tail and EOF.

One record serves three places: what a response (or an SSE control event) says
about where the stream stands after it, where the read loop sends its next
request, and what a :class:`~durable_streams.StreamResponse` has handed out.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReadPosition"]


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
