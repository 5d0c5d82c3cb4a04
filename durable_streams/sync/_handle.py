"""The sync ``StreamHandle``: the async handle's operations as blocking calls."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from durable_streams import (
    OFFSET_START,
    AppendResult,
    AppendRetry,
    CloseResult,
    CreateResult,
    HeadersArg,
    LiveMode,
    OnError,
    ParamsArg,
    Position,
    ReadLimits,
    RetryPolicy,
    StreamInfo,
)
from durable_streams import StreamHandle as AsyncStreamHandle

from ._portal import call, get_portal
from ._response import StreamResponse

__all__ = ["StreamHandle"]

_MISSING: Any = object()


class StreamHandle:
    """A handle on one stream URL for code that is not async (threads, WSGI, scripts).

    The same operations, arguments, results, errors, retries and limits as
    :class:`durable_streams.StreamHandle`, as blocking calls: each runs the
    async core on the process's one background event loop thread. Safe to use
    from many threads. Calling it from a running event loop raises
    :class:`~durable_streams.UsageError` (use the async API there).
    ``KeyboardInterrupt`` or a :func:`fail_after` deadline cancels the request
    under way. Header and parameter callables run on the background thread.
    A ``client`` (an ``httpx.AsyncClient``, for custom transports, proxies or
    auth) is used on that thread only; the handle never closes a client it was
    given.

    Example::

        from durable_streams.sync import StreamHandle

        with StreamHandle("http://127.0.0.1:4437/v1/stream/chat-42") as handle:
            handle.create(content_type="application/json")
            handle.append({"role": "user", "text": "hi"})
            with handle.stream(offset="-1") as res:
                for item in res.iter_json():
                    print(item)
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        content_type: str | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        append_retry: AppendRetry = "safe",
        limits: ReadLimits | None = None,
    ) -> None:
        get_portal()  # refuse a running event loop now, not at the first request
        self._handle = AsyncStreamHandle(
            url,
            client=client,
            content_type=content_type,
            headers=headers,
            params=params,
            timeout=timeout,
            retry=retry,
            append_retry=append_retry,
            limits=limits,
        )

    # -- lifecycle -----------------------------------------------------------------------

    def release(self) -> None:
        """Release the handle's HTTP connections (the stream is untouched).

        Leaving a ``with`` block does this; :meth:`close` closes the *stream*.

        Example::

            handle.release()
        """
        call(self._handle.aclose)

    def __enter__(self) -> StreamHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"sync.{self._handle!r}"

    @property
    def url(self) -> str:
        """The stream URL as given."""
        return self._handle.url

    @property
    def content_type(self) -> str | None:
        """The stream's content type, once known."""
        return self._handle.content_type

    @property
    def async_handle(self) -> AsyncStreamHandle:
        """The async handle this one drives (its coroutines belong to the background loop).

        Example::

            producer = durable_streams.IdempotentProducer(handle.async_handle, "id")
        """
        return self._handle

    # -- operations --------------------------------------------------------------------------

    def create(
        self,
        *,
        content_type: str | None = None,
        ttl: int | None = None,
        expires_at: datetime | str | None = None,
        body: bytes | str | None = None,
        closed: bool = False,
        forked_from: str | None = None,
        fork_offset: str | None = None,
        fork_sub_offset: int | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> CreateResult:
        """Create the stream (``PUT``); see :meth:`durable_streams.StreamHandle.create`.

        Example::

            result = handle.create(content_type="text/plain", ttl=3600)
            print(result.created, result.next_offset)
        """
        return call(
            self._handle.create,
            content_type=content_type,
            ttl=ttl,
            expires_at=expires_at,
            body=body,
            closed=closed,
            forked_from=forked_from,
            fork_offset=fork_offset,
            fork_sub_offset=fork_sub_offset,
            headers=headers,
            params=params,
        )

    def append(
        self,
        data: Any,
        *,
        seq: str | int | None = None,
        close: bool = False,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> AppendResult:
        """Append one message; see :meth:`durable_streams.StreamHandle.append`.

        Example::

            print(handle.append({"type": "token", "text": "Hel"}).next_offset)
        """
        return call(self._handle.append, data, seq=seq, close=close, headers=headers, params=params)

    def append_many(
        self,
        items: Iterable[Any],
        *,
        seq: str | int | None = None,
        close: bool = False,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> AppendResult:
        """Append several messages in one request, atomically.

        Example::

            handle.append_many([{"n": 1}, {"n": 2}])
        """
        return call(
            self._handle.append_many, items, seq=seq, close=close, headers=headers, params=params
        )

    def close(
        self, *, final: Any = _MISSING, headers: HeadersArg = None, params: ParamsArg = None
    ) -> CloseResult:
        """Close the stream (readers reach EOF); ``final=`` appends a last message with it.

        Example::

            print(handle.close(final={"type": "done"}).final_offset)
        """
        if final is _MISSING:
            return call(self._handle.close, headers=headers, params=params)
        return call(self._handle.close, final=final, headers=headers, params=params)

    def head(self, *, headers: HeadersArg = None, params: ParamsArg = None) -> StreamInfo:
        """The stream's metadata (``HEAD``); :class:`NotFoundError` if it does not exist.

        Example::

            info = handle.head()
            print(info.content_type, info.next_offset, info.closed)
        """
        return call(self._handle.head, headers=headers, params=params)

    def exists(self, *, headers: HeadersArg = None, params: ParamsArg = None) -> bool:
        """Whether the stream exists.

        Example::

            if not handle.exists():
                handle.create(content_type="text/plain")
        """
        return call(self._handle.exists, headers=headers, params=params)

    def delete(self, *, headers: HeadersArg = None, params: ParamsArg = None) -> None:
        """Delete the stream; :class:`NotFoundError` if it does not exist.

        Example::

            handle.delete()
        """
        call(self._handle.delete, headers=headers, params=params)

    def stream(
        self,
        offset: str | int | Position = OFFSET_START,
        live: LiveMode = False,
        *,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        on_error: OnError | None = None,
        retry: RetryPolicy | None = None,
        limits: ReadLimits | None = None,
    ) -> StreamResponse:
        """Open a read from ``offset`` (sends the first request; a missing stream raises here).

        The arguments are those of :meth:`durable_streams.StreamHandle.stream`;
        ``on_error`` runs on the background thread. Use the result with ``with``.

        Example::

            with handle.stream(offset=saved, live="auto") as res:
                for batch in res:
                    process(batch.items)
                    saved = res.offset
        """

        async def open_response() -> StreamResponse:
            response = await self._handle.stream(
                offset,
                live,
                headers=headers,
                params=params,
                on_error=on_error,
                retry=retry,
                limits=limits,
            )
            return StreamResponse(response)

        return call(open_response)
