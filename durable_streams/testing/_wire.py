"""What the in-memory server receives and answers, independent of how it is reached.

The in-process transport (:mod:`._transport`) and the ASGI app (:mod:`._asgi`) both turn their
requests into a :class:`Request` and play a :class:`Reply` back: one implementation, two ways in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    """One HTTP request, body read whole. Header names are lowercase."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    #: ``scheme://host[:port]`` the client used, for ``Location``.
    base_url: str

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        for key, value in self.query:
            if key == name:
                return value
        return None

    def params(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]


@dataclass
class Reply:
    """One response: whole (``body``) or live (``stream``, e.g. SSE), or no response at all."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: A live body: chunks as they happen. Closing it (``aclose``) stops the server side.
    stream: AsyncIterator[bytes] | None = None
    #: Drop the connection without answering (fault injection).
    drop: bool = False


Handler = Callable[[Request], Awaitable[Reply]]
