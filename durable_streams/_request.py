"""Opening a read: what ``handle.stream(...)`` and ``stream(url)`` return.

A :class:`StreamRequest` is awaited (send the first request, get the
:class:`StreamResponse`) or used with ``async with`` (the same, and the
response is closed on exit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

import anyio

from . import _protocol as p
from ._live import OnError, ReadLoop
from ._response import StreamResponse
from ._transport import HeadersArg, ParamsArg, Transport

__all__ = ["StreamRequest", "stream_request"]


class StreamRequest:
    """What ``handle.stream(...)`` returns: await it, or use it with ``async with``.

    Awaiting sends the first request (so a missing stream raises
    :class:`NotFoundError` there) and returns the :class:`StreamResponse`; the
    ``async with`` form also closes the response on exit.

    Example::

        res = await handle.stream(offset="-1")
        async with handle.stream(offset="-1", live="auto") as res:
            ...
    """

    __slots__ = ("_open", "_response")

    def __init__(self, open_response: Callable[[], Awaitable[StreamResponse]]) -> None:
        self._open = open_response
        self._response: StreamResponse | None = None

    def __await__(self) -> Generator[Any, None, StreamResponse]:
        return self._open().__await__()

    async def __aenter__(self) -> StreamResponse:
        self._response = await self._open()
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            await self._response.aclose()


def stream_request(
    transport: Transport,
    *,
    offset: str | int,
    live: p.LiveMode,
    headers: HeadersArg,
    params: ParamsArg,
    on_error: OnError | None,
    content_type: str | None,
    etags: dict[str, tuple[str, str | None]] | None,
    owns_transport: bool,
) -> StreamRequest:
    """The awaitable/context manager behind ``handle.stream()`` and ``stream()``."""

    async def open_response() -> StreamResponse:
        try:
            loop = ReadLoop(
                transport,
                offset=offset,
                live=live,
                headers=headers,
                params=params,
                on_error=on_error,
                content_type=content_type,
                etags=etags,
            )
            await loop.start()
        except BaseException:
            if owns_transport:
                with anyio.CancelScope(shield=True):
                    await transport.aclose()
            raise
        return StreamResponse(loop, owned_transport=transport if owns_transport else None)

    return StreamRequest(open_response)
