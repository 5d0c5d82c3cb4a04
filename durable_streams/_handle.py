"""``StreamHandle``: create, append to, inspect, close and delete one stream."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from . import _protocol as p
from ._append import post_append, proves_not_applied
from ._codec import encode_item, items_of, join_items
from ._errors import (
    DurableStreamError,
    EmptyAppendError,
    GoneError,
    InvalidArgumentError,
    NotFoundError,
    UsageError,
)
from ._limits import DEFAULT_READ_LIMITS, ReadLimits, check_limits
from ._models import AppendResult, CloseResult, CreateResult, StreamInfo
from ._options import check_content_type, create_headers, parse_expires_at
from ._position import Position
from ._read_loop import EtagCache
from ._redact import redact_url
from ._response import StreamRequest, stream_request
from ._retry import RetryPolicy, call_with_retry
from ._transport import Transport, response_flag
from ._types import AppendRetry, HeadersArg, LiveMode, OnError, ParamsArg

__all__ = ["DurableStream", "StreamHandle"]


class _NoFinal:
    """The default of ``close(final=...)``: no final message (None is a valid JSON message)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no final message>"


_MISSING: Any = _NoFinal()


class StreamHandle:
    """A handle on one stream URL: the entry point for writing and reading it.

    The handle owns a pooled ``httpx.AsyncClient`` unless you pass ``client=``
    (which it then never closes, so many handles can share one client).
    ``headers`` and ``params`` hold strings or sync/async callables that are
    called on every request (retries included), e.g. to refresh a token.
    ``timeout`` is seconds (every phase) or an ``httpx.Timeout``; the default
    keeps connect/write/pool finite and the read timeout above a 30 s long-poll.

    ``append_retry`` decides when a plain append (no ``seq``, no producer) is
    retried: ``"safe"`` (default) only after failures that prove nothing was
    stored (connection refused, 429, 503), raising
    :class:`AppendOutcomeUnknownError` otherwise; ``"at-least-once"`` after any
    retryable failure, accepting possible duplicates (what the conformance
    suite expects). Create, head, close and delete always retry.

    Example::

        async with StreamHandle("http://127.0.0.1:4437/v1/stream/chat-42") as handle:
            await handle.create(content_type="application/json")
            await handle.append({"role": "user", "text": "hi"})
            info = await handle.head()
            print(info.next_offset)
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
        if append_retry not in ("safe", "at-least-once"):
            raise InvalidArgumentError(
                "append_retry must be 'safe' or 'at-least-once'", field="append_retry"
            )
        self._transport = Transport(
            url, client=client, headers=headers, params=params, timeout=timeout, retry=retry
        )
        self._content_type = check_content_type(content_type)
        self._append_retry: AppendRetry = append_retry
        self._limits = check_limits(limits) or DEFAULT_READ_LIMITS
        self._etags = EtagCache()  # of this handle's reads, so a repeated catch-up can get a 304

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> StreamHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the HTTP client if the handle created it (the stream is untouched)."""
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"StreamHandle({redact_url(self._transport.url)!r})"

    # -- properties ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The stream URL as given."""
        return self._transport.url

    @property
    def content_type(self) -> str | None:
        """The stream's content type, once known (from ``create``, ``head`` or the constructor)."""
        return self._content_type

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client this handle sends requests with."""
        return self._transport.client

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of this handle."""
        return self._transport.retry

    # -- create ------------------------------------------------------------------------------

    async def create(
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
        """Create the stream (``PUT``); idempotent when the configuration matches.

        ``ttl`` (idle seconds) and ``expires_at`` (an aware datetime or an RFC 3339
        string) are exclusive. ``body`` is the initial content (on JSON streams,
        JSON text; an array becomes one message per element). ``closed=True``
        creates it already closed. ``forked_from`` (a path or URL on the same
        server) makes a fork holding the source's data before ``fork_offset``
        (default: its tail) plus ``fork_sub_offset`` messages/bytes.

        Raises :class:`StreamConfigMismatchError` (409) when the stream exists
        with another configuration.

        Example::

            result = await handle.create(content_type="text/plain", ttl=3600)
            print("created" if result.created else "already there", result.next_offset)
        """
        self._check_open("create")
        protocol = create_headers(
            content_type=content_type or self._content_type,
            ttl=ttl,
            expires_at=expires_at,
            closed=closed,
            forked_from=forked_from,
            fork_offset=fork_offset,
            fork_sub_offset=fork_sub_offset,
        )
        kind = protocol.get(p.CONTENT_TYPE)
        if body is not None and not isinstance(body, (bytes, str)):
            raise InvalidArgumentError(
                f"body must be bytes or str, not {type(body).__name__}", field="body"
            )
        content = body.encode("utf-8") if isinstance(body, str) else body

        async def attempt() -> httpx.Response:
            return await self._transport.request(
                "PUT",
                operation="create",
                ok=(200, 201),
                protocol_headers=protocol,
                headers=headers,
                params=params,
                content=content,
            )

        response = await call_with_retry(self.retry, attempt, what=f"create {self._where}")
        result_type = response.headers.get(p.CONTENT_TYPE) or kind
        if result_type:
            self._content_type = result_type
        return CreateResult(
            created=response.status_code == 201,
            status=response.status_code,
            next_offset=response.headers.get(p.STREAM_NEXT_OFFSET),
            closed=response_flag(response.headers, p.STREAM_CLOSED),
            content_type=result_type,
            location=response.headers.get(p.LOCATION),
        )

    # -- append --------------------------------------------------------------------------------

    async def append(
        self,
        data: Any,
        *,
        seq: str | int | None = None,
        close: bool = False,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> AppendResult:
        """Append one message (``POST``).

        On byte and text streams ``data`` is ``bytes`` or ``str`` (UTF-8). On JSON
        streams it is one message: ``bytes``/``str`` are taken as serialised JSON
        text and sent as they are; any other value (dict, list, number, bool,
        None, pydantic model) is serialised. ``seq`` sets ``Stream-Seq`` (must
        strictly increase; integers are zero-padded so they compare correctly).
        ``close=True`` appends and closes the stream in one request.

        A plain append is retried only when the failure proves nothing was
        written (see ``append_retry``); otherwise :class:`AppendOutcomeUnknownError`
        is raised. For exactly-once writes with retries use
        :class:`IdempotentProducer`.

        Example::

            result = await handle.append({"type": "token", "text": "Hel"})
            print(result.next_offset)
        """
        json_mode = p.is_json(
            await self.write_content_type("append and close" if close else "append")
        )
        body = encode_item(data, json_mode=json_mode)
        if json_mode:
            body = b"[" + body + b"]"
        return await self._post(body, seq=seq, close=close, headers=headers, params=params)

    async def append_many(
        self,
        items: Iterable[Any],
        *,
        seq: str | int | None = None,
        close: bool = False,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> AppendResult:
        """Append several messages in one request, atomically.

        Each item follows the rules of :meth:`append`. On JSON streams the body
        is one JSON array; on other streams the items are concatenated.

        Example::

            await handle.append_many([{"n": 1}, {"n": 2}, {"n": 3}])
        """
        group = items_of(items)
        json_mode = p.is_json(await self.write_content_type("append_many"))
        encoded = [encode_item(item, json_mode=json_mode) for item in group]
        if not encoded:
            raise EmptyAppendError("append_many needs at least one item")
        body = join_items(encoded, json_mode=json_mode)
        return await self._post(body, seq=seq, close=close, headers=headers, params=params)

    async def close(
        self,
        *,
        final: Any = _MISSING,
        headers: HeadersArg = None,
        params: ParamsArg = None,
    ) -> CloseResult:
        """Close the stream: no more appends; readers reach EOF at its end.

        ``final=`` appends one last message and closes in the same request.
        Closing an already closed stream without ``final`` succeeds.

        Example::

            result = await handle.close(final={"type": "done"})
            print(result.final_offset)
        """
        self._check_open("close")
        if final is _MISSING:
            response = await call_with_retry(
                self.retry,
                lambda: self._transport.request(
                    "POST",
                    operation="close",
                    protocol_headers={p.STREAM_CLOSED: p.TRUE},
                    headers=headers,
                    params=params,
                ),
                what=f"close {self._where}",
            )
            return CloseResult(final_offset=response.headers.get(p.STREAM_NEXT_OFFSET))
        result = await self.append(final, close=True, headers=headers, params=params)
        return CloseResult(final_offset=result.next_offset)

    async def _post(
        self,
        body: bytes,
        *,
        seq: str | int | None,
        close: bool,
        headers: HeadersArg,
        params: ParamsArg,
    ) -> AppendResult:
        return await post_append(
            self._transport,
            body,
            content_type=self._content_type or p.DEFAULT_CONTENT_TYPE,
            seq=seq,
            close=close,
            headers=headers,
            params=params,
            append_retry=self._append_retry,
        )

    # -- read ----------------------------------------------------------------------------------

    def stream(
        self,
        offset: str | int | Position = p.OFFSET_START,
        live: LiveMode = False,
        *,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        on_error: OnError | None = None,
        retry: RetryPolicy | None = None,
        limits: ReadLimits | None = None,
    ) -> StreamRequest:
        """Read the stream from ``offset``: await it, or use it with ``async with``.

        ``offset`` is ``"-1"`` (start), ``"now"`` (tail), an offset you stored, or
        a :class:`Position` (``res.position``: finer than an offset, it also skips
        what of a response was already handed out).
        ``live``: ``False`` reads to the tail and stops; ``"long-poll"``, ``"sse"``,
        ``True`` (long-poll) and ``"auto"`` (SSE, falling back to long-poll) keep
        reading new data until the stream closes.

        Failed requests are retried from the current position under ``retry``:
        by default the handle's :class:`RetryPolicy` for catch-up reads, and for
        live reads the same delays without attempt or elapsed limits, so a
        follower outlives a server restart (a policy with ``max_attempts=1``
        stays without retries); pass ``retry=`` to bound a live read.

        ``on_error(error)`` (sync or async) is called for every failed request of
        the session that could be retried — network errors, timeouts, 5xx, 429 —
        and for 401/403. Return None to retry as the policy says (a 401/403 is
        then raised), a :class:`RetryWith` to merge new headers/params into all
        later requests and retry (at once for 401/403, at most 3 times in a row),
        or raise to end the session with that error. Other errors (400, 404,
        410, parse errors) are raised without calling it. See
        :class:`StreamResponse` for the ways to consume the result.
        ``limits`` replaces the handle's :class:`ReadLimits` for this read.

        Example::

            async with handle.stream(offset=saved, live="auto") as res:
                async for batch in res:
                    process(batch.items)
                    saved = batch.offset
        """
        self._check_open("stream")
        return stream_request(
            self._transport,
            limits=check_limits(limits) or self._limits,
            offset=offset,
            live=live,
            headers=headers,
            params=params,
            on_error=on_error,
            content_type=self._content_type,
            etags=self._etags,
            owns_transport=False,
            retry=retry,
        )

    # -- head / exists / delete ---------------------------------------------------------------

    async def head(self, *, headers: HeadersArg = None, params: ParamsArg = None) -> StreamInfo:
        """Fetch the stream's metadata (``HEAD``): type, tail offset, expiry, closed state.

        Raises :class:`NotFoundError` when the stream does not exist.

        Example::

            info = await handle.head()
            print(info.content_type, info.next_offset, info.closed)
        """
        self._check_open("head")
        return await self._head(operation="head", headers=headers, params=params)

    async def _head(self, *, operation: str, headers: HeadersArg, params: ParamsArg) -> StreamInfo:
        response = await call_with_retry(
            self.retry,
            lambda: self._transport.request(
                "HEAD", operation=operation, ok=(200, 204), headers=headers, params=params
            ),
            what=f"{operation} {self._where}",
        )
        found = response.headers
        content_type = found.get(p.CONTENT_TYPE)
        if content_type:
            self._content_type = content_type
        return StreamInfo(
            content_type=content_type,
            next_offset=found.get(p.STREAM_NEXT_OFFSET),
            ttl=p.header_int(found, p.STREAM_TTL),
            expires_at=parse_expires_at(found.get(p.STREAM_EXPIRES_AT)),
            closed=response_flag(found, p.STREAM_CLOSED),
            etag=found.get(p.ETAG),
        )

    async def exists(self, *, headers: HeadersArg = None, params: ParamsArg = None) -> bool:
        """Whether the stream exists (false for missing, expired or deleted streams).

        Example::

            if not await handle.exists():
                await handle.create(content_type="text/plain")
        """
        try:
            await self.head(headers=headers, params=params)
        except (NotFoundError, GoneError):
            return False
        return True

    async def delete(self, *, headers: HeadersArg = None, params: ParamsArg = None) -> None:
        """Delete the stream. Raises :class:`NotFoundError` if it does not exist.

        Example::

            await handle.delete()
        """
        self._check_open("delete")
        ambiguous = False  # an earlier attempt may have deleted the stream

        async def attempt() -> None:
            nonlocal ambiguous
            try:
                await self._transport.request(
                    "DELETE",
                    operation="delete",
                    ok=(200, 202, 204),
                    headers=headers,
                    params=params,
                )
            except NotFoundError:
                # A retry after a lost response finds the stream already gone.
                if not ambiguous:
                    raise
            except DurableStreamError as error:
                ambiguous = ambiguous or not proves_not_applied(error)
                raise

        await call_with_retry(self.retry, attempt, what=f"delete {self._where}")
        self._content_type = None

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return redact_url(self._transport.url)

    @property
    def transport(self) -> Transport:
        """The HTTP layer this handle sends with, shared by producers and readers made from it.

        Part of the SDK's own plumbing (its type is not public API).
        """
        return self._transport

    async def write_content_type(self, operation: str = "append") -> str:
        """The content type appends are sent with: the known one, else learned with one HEAD.

        Errors of that HEAD name ``operation`` (the call the user made).

        Example::

            content_type = await handle.write_content_type()
        """
        self._check_open(operation)
        if self._content_type is None:
            await self._head(operation=operation, headers=None, params=None)
        return self._content_type or p.DEFAULT_CONTENT_TYPE

    def _check_open(self, operation: str) -> None:
        if self._transport.client.is_closed:
            raise UsageError(
                f"{operation}() called on a closed handle (aclose() was called or its "
                "async with block ended); open a new StreamHandle",
                url=self._transport.url,
            )


DurableStream = StreamHandle
"""Alias of :class:`StreamHandle`, the name the official clients use."""
