"""Module-level one-shot helpers: one call, one temporary handle.

For more than one operation on a stream, use a :class:`StreamHandle` (it keeps
its connection pool); these helpers are for scripts and quick checks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from . import _protocol as p
from ._handle import StreamHandle
from ._models import AppendResult, CloseResult, CreateResult, StreamInfo
from ._options import check_content_type
from ._response import StreamRequest, stream_request
from ._retry import RetryPolicy
from ._transport import Transport
from ._types import HeadersArg, LiveMode, OnError, ParamsArg

__all__ = ["append", "close", "create", "delete", "head", "stream"]


def _handle(
    url: str,
    client: httpx.AsyncClient | None,
    headers: HeadersArg,
    params: ParamsArg,
    timeout: httpx.Timeout | float | None,
    retry: RetryPolicy | None,
    content_type: str | None = None,
) -> StreamHandle:
    return StreamHandle(
        url,
        client=client,
        headers=headers,
        params=params,
        timeout=timeout,
        retry=retry,
        content_type=content_type,
    )


async def create(
    url: str,
    *,
    content_type: str | None = None,
    ttl: int | None = None,
    expires_at: datetime | str | None = None,
    body: bytes | str | None = None,
    closed: bool = False,
    client: httpx.AsyncClient | None = None,
    headers: HeadersArg = None,
    params: ParamsArg = None,
    timeout: httpx.Timeout | float | None = None,
    retry: RetryPolicy | None = None,
) -> CreateResult:
    """Create a stream at ``url``.

    Example::

        await durable_streams.create(url, content_type="application/json", ttl=3600)
    """
    async with _handle(url, client, headers, params, timeout, retry) as handle:
        return await handle.create(
            content_type=content_type, ttl=ttl, expires_at=expires_at, body=body, closed=closed
        )


async def append(
    url: str,
    data: Any,
    *,
    content_type: str | None = None,
    seq: str | int | None = None,
    close: bool = False,
    client: httpx.AsyncClient | None = None,
    headers: HeadersArg = None,
    params: ParamsArg = None,
    timeout: httpx.Timeout | float | None = None,
    retry: RetryPolicy | None = None,
) -> AppendResult:
    """Append one message to the stream at ``url`` (see :meth:`StreamHandle.append`).

    Pass ``content_type`` to save the HEAD that otherwise learns it.

    Example::

        await durable_streams.append(url, {"event": "signup"}, content_type="application/json")
    """
    async with _handle(url, client, headers, params, timeout, retry, content_type) as handle:
        return await handle.append(data, seq=seq, close=close)


async def head(
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: HeadersArg = None,
    params: ParamsArg = None,
    timeout: httpx.Timeout | float | None = None,
    retry: RetryPolicy | None = None,
) -> StreamInfo:
    """Metadata of the stream at ``url``.

    Example::

        info = await durable_streams.head(url)
    """
    async with _handle(url, client, headers, params, timeout, retry) as handle:
        return await handle.head()


async def close(
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: HeadersArg = None,
    params: ParamsArg = None,
    timeout: httpx.Timeout | float | None = None,
    retry: RetryPolicy | None = None,
) -> CloseResult:
    """Close the stream at ``url`` (EOF for readers).

    Example::

        await durable_streams.close(url)
    """
    async with _handle(url, client, headers, params, timeout, retry) as handle:
        return await handle.close()


async def delete(
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    headers: HeadersArg = None,
    params: ParamsArg = None,
    timeout: httpx.Timeout | float | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Delete the stream at ``url``.

    Example::

        await durable_streams.delete(url)
    """
    async with _handle(url, client, headers, params, timeout, retry) as handle:
        await handle.delete()


def stream(
    url: str,
    *,
    offset: str | int = p.OFFSET_START,
    live: LiveMode = False,
    client: httpx.AsyncClient | None = None,
    content_type: str | None = None,
    headers: HeadersArg = None,
    params: ParamsArg = None,
    timeout: httpx.Timeout | float | None = None,
    retry: RetryPolicy | None = None,
    on_error: OnError | None = None,
) -> StreamRequest:
    """Read the stream at ``url`` (see :meth:`StreamHandle.stream`); await it or ``async with``.

    The response owns its HTTP client (unless you pass ``client=``) and
    releases it when closed or fully consumed.

    Example::

        async with durable_streams.stream(url, offset="-1", live="auto") as res:
            async for item in res.iter_json():
                print(item)
    """
    transport = Transport(
        url, client=client, headers=headers, params=params, timeout=timeout, retry=retry
    )
    return stream_request(
        transport,
        offset=offset,
        live=live,
        headers=None,
        params=None,
        on_error=on_error,
        content_type=check_content_type(content_type),
        etags=None,
        owns_transport=True,
    )
