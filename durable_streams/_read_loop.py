"""The read loop: one loop for catch-up, long-poll, SSE and auto mode.

A read session is a sequence of requests, each answering with units (see
``_units.py``): the data of one catch-up or long-poll response, or of one SSE
data+control group, with the position to resume from. The loop only differs
per mode in how a unit is fetched; the state machine (catch-up until
up-to-date, then live; stop at EOF; retry from the current position) is the
same for all. Bodies are read through :mod:`._transport` and decoded by
:mod:`._units`; this module never sees an httpx exception.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx

from . import _protocol as p
from . import _telemetry
from ._errors import (
    BadRequestError,
    DurableStreamError,
    ForbiddenError,
    InvalidArgumentError,
    InvalidOffsetError,
    NetworkError,
    NotSupportedError,
    ParseError,
    TransportError,
    UnauthorizedError,
    UsageError,
    error_for_response,
)
from ._limits import DEFAULT_READ_LIMITS, ReadLimits
from ._position import Position, PositionUnit, ReadPosition
from ._redact import excerpt, redact_url
from ._retry import RetryPolicy, is_retryable
from ._sse import iter_sse_events
from ._transport import (
    DEFAULT_TIMEOUT,
    Transport,
    capped,
    error_body,
    iter_body,
    read_body,
    release,
)
from ._types import HeadersArg, LiveMode, OnError, ParamsArg, RetryWith, ValueSource
from ._units import (
    Skip,
    Unit,
    byte_groups,
    check_progress,
    check_sse_data,
    is_event_stream,
    json_item_groups,
    response_end,
    sse_unit,
)

__all__ = ["BodyMode", "CachedRead", "EtagCache", "ReadLoop"]

#: How many 401/403 answers in a row ``on_error`` may turn into a retry.
MAX_AUTH_RETRIES = 3
#: In auto mode, this many "early" SSE connections in a row switch to long-poll.
EARLY_SSE_LIMIT = 3
#: An SSE connection that ends sooner than this without data counts as early.
EARLY_SSE_SECONDS = 1.0
#: ETags of empty up-to-date reads remembered per handle (oldest dropped first).
MAX_ETAGS = 64
#: A live request answered without data sooner than this could not have been held by
#: the server (common servers wait 30 s, the reference server 1 s): the next one waits.
PACE_BELOW_SECONDS = 0.25
#: The first wait after such an answer; each next one in a row doubles, up to the last.
PACE_FIRST = 0.1
PACE_MAX = 2.0
#: Least read timeout of live requests: above the 30 s long-poll wait and SSE
#: keep-alive interval of common servers, even when the handle's timeout is short.
LIVE_READ_TIMEOUT = DEFAULT_TIMEOUT.read or 65.0


class BodyMode(enum.Enum):
    """How the bodies of catch-up and long-poll responses are handed out (SSE groups
    are always whole)."""

    #: One unit per response; JSON bodies are parsed into items.
    WHOLE = "whole"
    #: Bytes as they arrive, in bounded memory; JSON bodies are not parsed.
    CHUNKS = "chunks"
    #: A JSON body's items as they parse, in bounded memory; other bodies whole.
    JSON_ITEMS = "json-items"


@dataclass(frozen=True, slots=True)
class CachedRead:
    """An empty, up-to-date catch-up read: its ETag, and the content type it had."""

    etag: str
    content_type: str | None


class EtagCache:
    """ETags of a handle's empty up-to-date catch-up reads, by offset (bounded).

    A later read from the same offset sends ``If-None-Match``, and a 304 proves
    nothing changed without a body. The oldest entry goes first past
    ``max_entries``.
    """

    __slots__ = ("_reads", "max_entries")

    def __init__(self, max_entries: int = MAX_ETAGS) -> None:
        self._reads: dict[str, CachedRead] = {}
        self.max_entries = max_entries

    def get(self, offset: str) -> CachedRead | None:
        return self._reads.get(offset)

    def remember(self, offset: str, read: CachedRead) -> None:
        if offset not in self._reads and len(self._reads) >= self.max_entries:
            del self._reads[next(iter(self._reads))]
        self._reads[offset] = read

    def __len__(self) -> int:
        return len(self._reads)


def start_position(offset: str | int | Position) -> Position:
    """Where a read starts: ``-1`` (int) means the start; strings are opaque offsets."""
    if isinstance(offset, Position):
        if offset.skip and offset.offset == p.OFFSET_NOW:
            raise InvalidArgumentError(
                "a position at 'now' cannot skip anything (there is nothing before it to skip)",
                field="offset",
            )
        return offset
    return Position(normalize_offset(offset))


def normalize_offset(offset: str | int) -> str:
    """The offset as sent: ``-1`` (int) means the start; strings are opaque."""
    if isinstance(offset, bool):
        raise InvalidArgumentError("offset must be a string or -1", field="offset")
    if isinstance(offset, int):
        if offset != -1:
            raise InvalidArgumentError(
                "an integer offset must be -1 (the start); stored offsets are strings",
                field="offset",
            )
        return p.OFFSET_START
    if not isinstance(offset, str) or not offset:
        raise InvalidArgumentError(
            "offset must be a non-empty string, -1 or a Position", field="offset"
        )
    return offset


_LIVE_MODES = (p.LIVE_LONG_POLL, p.LIVE_SSE, "auto")

logger = logging.getLogger("durable_streams")


class ReadLoop:
    """State and requests of one read session (used by :class:`StreamResponse`)."""

    def __init__(
        self,
        transport: Transport,
        *,
        offset: str | int | Position,
        live: LiveMode,
        headers: HeadersArg,
        params: ParamsArg,
        on_error: OnError | None,
        content_type: str | None,
        etags: EtagCache | None,
        retry: RetryPolicy | None = None,
        limits: ReadLimits = DEFAULT_READ_LIMITS,
    ) -> None:
        if not (live is True or live is False or (isinstance(live, str) and live in _LIVE_MODES)):
            raise InvalidArgumentError(
                "live must be False, True, 'long-poll', 'sse' or 'auto'", field="live"
            )
        if on_error is not None and not callable(on_error):
            raise InvalidArgumentError("on_error must be callable", field="on_error")
        self.transport = transport
        self._where = redact_url(transport.url)  # for messages: computed once, not per response
        self.live: LiveMode = live
        start = start_position(offset)
        # Where the next request reads from; ``skip`` counts what of its answer the caller
        # already has (handed out before a retry, or before a stored position).
        self.position = ReadPosition(offset=start.offset, skip=start.skip)
        self.skip_counts: PositionUnit = start.unit  # what ``skip`` (and positions) count
        self.content_type = content_type
        self.status: int | None = None
        self.headers = httpx.Headers()
        self.finished = False
        self.stopped = False  # aclose() was called
        # The first request never carries `live`, except at `now` (nothing to catch up).
        self._live_started = self.offset == p.OFFSET_NOW and live is not False
        self._fallback = False  # auto mode gave up on SSE for this session
        self._early_sse = 0
        self._auth_retries = 0
        self._headers: dict[str, ValueSource] = dict(headers or {})
        self._params: dict[str, ValueSource] = dict(params or {})
        self._on_error = on_error
        self._etags = etags
        self.limits = limits
        self._max_ratio = limits.max_decompression_ratio
        # The offset was issued by the server (not "-1", "now" or the caller's own), so
        # the next one may not be lower.
        self._issued = False
        self._pace = PACE_FIRST  # the wait before a live request after a too-quick empty one
        self._paced = False  # the last live request came back empty much too soon
        self._sent_at = 0.0  # when the request being read was sent
        if retry is None:
            # A follower outlives a server restart: live reads retry without a limit
            # (on_error sees every failure and may stop it); catch-up reads keep a budget.
            retry = transport.retry
            if live is not False and retry.max_attempts != 1:  # 1: the user wants no retries
                retry = retry.without_limits()
        self.retry = retry
        self._backoff = retry.backoff()
        self._pending: httpx.Response | None = None
        self._scope: anyio.CancelScope | None = None  # the network wait in progress

    # -- state -------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """What the next request is: ``catch-up``, ``long-poll`` or ``sse``."""
        if not self._live_started:
            return "catch-up"
        if self.live == p.LIVE_SSE or (self.live == "auto" and not self._fallback):
            return p.LIVE_SSE
        return p.LIVE_LONG_POLL

    @property
    def json_mode(self) -> bool:
        return p.is_json(self.content_type)

    @property
    def offset(self) -> str:
        """The offset the next request reads from."""
        return self.position.offset

    @property
    def cursor(self) -> str | None:
        """The cursor the next live request echoes."""
        return self.position.cursor

    def unit_for(self, body: BodyMode) -> PositionUnit:
        """What positions count in a read whose bodies are handed out as ``body``."""
        return "items" if body is not BodyMode.CHUNKS and self.json_mode else "bytes"

    def _skip(self, unit: PositionUnit) -> Skip:
        """What the next response's start repeats of what the caller already has."""
        skip = self.position.skip
        if skip and unit != self.skip_counts:
            raise UsageError(
                f"this read counts {unit} but its start position skips {skip} "
                f"{self.skip_counts}: resume a position with the kind of read that made it "
                "(iter_json()/batches on JSON streams count items; iter_bytes()/iter_text() "
                "and other streams count bytes)"
            )
        self.skip_counts = unit
        return Skip(skip)

    def _complete(self, unit: Unit, skip: Skip) -> Unit:
        """``unit`` (a response's last) without what was skipped, ending where the read is."""
        end = unit.end
        assert end is not None
        unit = skip.unit(unit)
        if skip.remaining:
            if end.up_to_date:
                # The position asked to skip more than the stream holds after its offset.
                raise InvalidOffsetError(
                    f"read from {self._where} reached the tail at offset {excerpt(end.offset)} "
                    f"with {skip.remaining} {self.skip_counts} of its start position still "
                    "to skip: the position is not one this stream issued",
                    url=self.transport.url,
                )
            return Unit(data=unit.data, items=unit.items, end=replace(end, skip=skip.remaining))
        return unit

    def _advance(self, end: ReadPosition, *, healthy: bool = True) -> None:
        """Move the request position past a complete unit; a healthy one forgets failures."""
        self.position = self.position.advance(end)
        self._issued = True
        if healthy:
            self._backoff.reset()
            self._auth_retries = 0
        if end.closed:
            self.finished = True
        elif end.up_to_date:
            if self.live is False:
                self.finished = True
            else:
                self._live_started = True

    def _check_order(self, next_offset: str, *, status: int, url: httpx.URL) -> None:
        """Refuse a next offset lower than the current one: the same data would come again.

        Offsets the server issued compare byte-wise. The sentinels ``-1`` and
        ``now`` compare with nothing, and an offset the caller passed only with
        one of its own length (a server may accept offsets it never issued).
        """
        current = self.offset
        if next_offset >= current:
            return
        if not self._issued and (
            current in (p.OFFSET_START, p.OFFSET_NOW) or len(current) != len(next_offset)
        ):
            return
        raise ParseError(
            f"read from {self._where} was sent back from offset {excerpt(current)} to "
            f"{excerpt(next_offset)}: offsets only grow (compared byte-wise), and following "
            "a lower Stream-Next-Offset would deliver the same data again",
            offset=current,
            status=status,
            url=url,
        )

    def _pace_after(self, delivered: bool) -> None:
        """After a live response: pace the next request if it came back empty much too soon."""
        if delivered or anyio.current_time() - self._sent_at >= PACE_BELOW_SECONDS:
            self._pace = PACE_FIRST
            self._paced = False
        else:
            self._paced = True

    # -- requests ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Send the first request, so that its errors (404, 400, ...) raise here."""
        if self._live_started and self.content_type is None:
            # Live at `now` skips catch-up, which is where the type is learned: SSE
            # responses and long-poll 204s do not carry it (and JSON looks like text).
            await self._learn_content_type()
        self._pending = await self._open()

    async def _learn_content_type(self) -> None:
        while True:
            try:
                response = await self.transport.request(
                    "HEAD",
                    operation="read (head)",
                    ok=(200, 204),
                    headers=self._headers,
                    params=self._params,
                )
            except DurableStreamError as error:
                await self._recover(error, head=True)
                continue
            self.content_type = response.headers.get(p.CONTENT_TYPE) or p.DEFAULT_CONTENT_TYPE
            return

    async def _open(self) -> httpx.Response:
        """Open the next response (status checked), retrying as the policy says."""
        while True:
            try:
                return await self._open_once()
            except DurableStreamError as error:
                await self._recover(error)

    async def _open_once(self) -> httpx.Response:
        mode = self.mode
        if self._paced and mode != "catch-up":
            # The last live request came back empty at once: a server that holds none
            # would be polled in a busy loop. Wait, longer each time in a row.
            with self._interruptible():
                await _sleep(self._pace)
            self._pace = min(self._pace * 2, PACE_MAX)
            self._paced = False
        protocol_params = {p.PARAM_OFFSET: self.offset}
        protocol_headers: dict[str, str] = {}
        if mode == "catch-up":
            cached = self._etags.get(self.offset) if self._etags is not None else None
            if cached is not None:
                protocol_headers[p.IF_NONE_MATCH] = cached.etag
        else:
            protocol_params[p.PARAM_LIVE] = mode
            if self.cursor is not None:
                protocol_params[p.PARAM_CURSOR] = self.cursor
        request = await self.transport.build(
            "GET",
            protocol_headers=protocol_headers,
            protocol_params=protocol_params,
            headers=self._headers,
            params=self._params,
            timeout=self._live_timeout() if mode != "catch-up" else None,
        )
        operation = f"read ({mode})"
        self._sent_at = anyio.current_time()
        with self._interruptible():
            response = await self.transport.send(
                request, operation=operation, stream=True, resend_count=self._backoff.attempts
            )
        status = response.status_code
        ok = status in (200, 204, 304) if mode != p.LIVE_SSE else status == 200
        if not ok:
            body = await error_body(response)
            error = error_for_response(response, operation=operation, body=body, is_read=True)
            if self.live == "auto" and mode == p.LIVE_SSE and _refuses_sse(error):
                # A server (or proxy) without SSE support: long-poll, which reports any
                # genuine problem with the request itself.
                self._fall_back(f"the server refused SSE ({status})")
                return await self._open_once()
            raise error
        if mode == p.LIVE_SSE and not is_event_stream(response):
            await release(response)
            if self.live == "auto":
                # Something between us and the server does not do SSE: long-poll instead.
                self._fall_back("the SSE response was not text/event-stream")
                return await self._open_once()
            raise ParseError(
                f"read (sse) expected text/event-stream, got "
                f"{excerpt(response.headers.get(p.CONTENT_TYPE, 'no content type'))} "
                f"from {self._where}",
                offset=self.offset,
                status=status,
                url=request.url,
            )
        if self.status is None:
            self.status = status
        self.headers = response.headers
        if not is_event_stream(response):
            found = response.headers.get(p.CONTENT_TYPE)
            if found:
                self.content_type = found
        return response

    def stop(self) -> None:
        """End the session; safe to call from another task than the reading one."""
        self.finished = self.stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        """Stop the session and release a response opened but not yet read."""
        self.stop()
        pending, self._pending = self._pending, None
        if pending is not None:
            await release(pending)

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Around each network wait, so :meth:`stop` can end a read from another task.

        The scope never spans a ``yield`` of the generators (anyio forbids that).
        """
        if self.stopped:
            raise _Stopped
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                yield
            finally:
                self._scope = None
        if scope.cancelled_caught:
            raise _Stopped

    def _live_timeout(self) -> httpx.Timeout | None:
        """The timeout of a live request: its read timeout outlasts the server's wait."""
        base = self.transport.timeout or self.transport.client.timeout
        if base.read is None or base.read >= LIVE_READ_TIMEOUT:
            return None
        return httpx.Timeout(
            connect=base.connect, read=LIVE_READ_TIMEOUT, write=base.write, pool=base.pool
        )

    async def _recover(self, error: DurableStreamError, *, head: bool = False) -> None:
        """Decide what a failed request leads to: raise, or return to retry."""
        auth = isinstance(error, (UnauthorizedError, ForbiddenError))
        if not auth and not is_retryable(error):
            raise error
        decision: object = None
        if self._on_error is not None:
            outcome: Any = self._on_error(error)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            decision = outcome
            if isinstance(decision, RetryWith):
                self._headers.update(decision.headers or {})
                self._params.update(decision.params or {})
            elif decision is not None:
                raise InvalidArgumentError(
                    f"on_error must return None or RetryWith, not {type(decision).__name__}",
                    field="on_error",
                ) from error
        if auth:
            self._auth_retries += 1
            if decision is None or self._auth_retries > MAX_AUTH_RETRIES:
                raise error
            return  # new credentials: retry at once
        if (
            not head
            and self.mode == p.LIVE_SSE
            and self.live == "auto"
            and isinstance(error, TransportError)
        ):
            self._early_sse += 1
            if self._early_sse >= EARLY_SSE_LIMIT:
                # Long-poll from now on, at once.
                self._fall_back(f"{EARLY_SSE_LIMIT} SSE connections in a row ended early")
                self._reconnected()
                return
        with self._interruptible():
            await self._backoff.sleep_before_retry(error, f"read {self._where}")
        self._reconnected()

    def _fall_back(self, why: str) -> None:
        """Auto mode gives up on SSE for this session: long-poll from now on."""
        self._fallback = True
        logger.info("read %s: falling back from SSE to long-poll: %s", self._where, why)

    def _reconnected(self) -> None:
        """A live session opens its read again (after a failure or an ended connection)."""
        if self._live_started and _telemetry.OTEL is not None:
            _telemetry.OTEL.reconnected(self.mode)

    # -- units -----------------------------------------------------------------------------------

    async def units(self, body: BodyMode) -> AsyncGenerator[Unit, None]:
        """Every unit of the session until EOF (or up-to-date when not live).

        ``body`` says how catch-up and long-poll bodies are handed out; when
        they are handed out as they arrive, only the last unit of a response
        carries its position.
        """
        try:
            while not self.finished:
                response = self._pending
                self._pending = None
                if response is None:
                    response = await self._open()
                try:
                    if is_event_stream(response):
                        async for unit in self._sse_units(response):
                            yield unit
                    else:
                        async for unit in self._http_units(response, body):
                            yield unit
                except DurableStreamError as error:
                    if self.stopped:
                        return  # closed by aclose() meanwhile
                    await self._recover(error)
                finally:
                    await release(response)
        except _Stopped:
            return  # stop() interrupted a network wait
        finally:
            pending, self._pending = self._pending, None
            if pending is not None:
                await release(pending)

    async def _http_units(
        self, response: httpx.Response, body: BodyMode
    ) -> AsyncGenerator[Unit, None]:
        cached = self._etags.get(self.offset) if self._etags is not None else None
        if response.status_code == 304 and cached is not None:
            # A 304 carries only the ETag: the content type comes from the cached read.
            self.content_type = self.content_type or cached.content_type
        json_mode = self.json_mode
        empty_items: list[Any] | None = [] if json_mode and body is not BodyMode.CHUNKS else None
        skip = self._skip(self.unit_for(body))
        if response.status_code == 304:
            # The cached read was empty and up to date, and still is (ETags change on close).
            end = ReadPosition(offset=self.offset, cursor=self.cursor, up_to_date=True)
            unit = self._complete(Unit(data=b"", items=empty_items, end=end), skip)
            assert unit.end is not None
            self._advance(unit.end)
            yield unit
            return
        end = response_end(response, offset=self.offset, where=self._where)
        self._check_order(end.offset, status=response.status_code, url=response.request.url)
        live_request = self.mode != "catch-up"
        streamed = False  # parts of the body were handed out before its last unit
        operation = f"read ({self.mode})"
        data: bytes | None = b""  # a 204 (a long-poll that timed out) has no body
        items = empty_items
        has_body = response.status_code != 204
        if has_body and body is not BodyMode.CHUNKS and json_mode:
            # Whole JSON bodies are parsed while they arrive too: depth and message
            # limits trip at once, and the raw body is bounded by max_body_bytes.
            collected: list[Any] = []
            whole = body is not BodyMode.JSON_ITEMS
            chunks = iter_body(
                response,
                operation,
                self._interruptible,
                max_ratio=self._max_ratio,
                ratio_after=self.limits.max_body_bytes,
            )
            if whole:
                chunks = capped(chunks, self.limits.max_body_bytes, url=self.transport.url)
            parts = json_item_groups(
                chunks,
                skip=skip,
                offset=self.offset,
                where=self._where,
                url=self.transport.url,
                max_item_bytes=self.limits.max_message_bytes,
                max_depth=self.limits.max_json_depth,
            )
            async with aclosing(parts):
                async for part, last in parts:
                    if whole:
                        collected.extend(part.items or ())
                        if last:
                            data, items = None, collected
                    elif last:
                        data, items = part.data, part.items
                    else:
                        streamed = True
                        self.position = self.position.handed_out(part.size)
                        yield part
        elif has_body and body is BodyMode.CHUNKS:
            # Handed out as it arrives: partial units first, the rest with the position.
            chunks = iter_body(
                response,
                operation,
                self._interruptible,
                max_ratio=self._max_ratio,
                ratio_after=self.limits.max_body_bytes,
            )
            byte_parts = byte_groups(chunks, skip=skip)
            async with aclosing(byte_parts):
                async for part, last in byte_parts:
                    if last:
                        data, items = part.data, part.items
                    else:
                        streamed = True
                        self.position = self.position.handed_out(part.size)
                        yield part
        elif has_body:
            data = await read_body(
                response,
                operation,
                self._interruptible,
                limit=self.limits.max_body_bytes,
                max_ratio=self._max_ratio,
                ratio_after=self.limits.max_body_bytes,
            )
            items = None
        unit = Unit(data=data, items=items, end=end)
        check_progress(unit, response, offset=self.offset, where=self._where)
        if live_request:
            self._pace_after(streamed or unit.has_data or end.closed)
        etag = response.headers.get(p.ETAG)
        if (
            self._etags is not None
            and etag
            and self.mode == "catch-up"
            and end.up_to_date
            and not unit.has_data
            and end.offset == self.offset
        ):
            self._etags.remember(self.offset, CachedRead(etag, self.content_type))
        unit = self._complete(unit, skip)
        assert unit.end is not None
        self._advance(unit.end)
        yield unit

    async def _sse_units(self, response: httpx.Response) -> AsyncGenerator[Unit, None]:
        base64 = response.headers.get(p.STREAM_SSE_DATA_ENCODING, "").lower() == p.SSE_BASE64
        json_mode = not base64 and self.json_mode
        skip = self._skip("items" if json_mode else "bytes")
        pending: list[str] = []
        controls = 0
        delivered = False
        started = anyio.current_time()
        events = iter_sse_events(
            iter_body(
                response,
                "read (sse)",
                self._interruptible,
                max_ratio=self._max_ratio,
                ratio_after=self.limits.max_body_bytes,
            ),
            max_line_bytes=self.limits.max_sse_line_bytes,
            max_event_bytes=self.limits.max_sse_line_bytes,
        )
        try:
            async for event in events:
                if event.event == "data":
                    check_sse_data(
                        event.data,
                        base64=base64,
                        json_mode=json_mode,
                        limits=self.limits,
                        offset=self.offset,
                        url=self.transport.url,
                    )
                    pending.append(event.data)
                elif event.event == "control":
                    unit = sse_unit(
                        pending, event.data, base64=base64, json_mode=json_mode, offset=self.offset
                    )
                    assert unit.end is not None
                    self._check_order(unit.end.offset, status=200, url=response.request.url)
                    pending = []
                    controls += 1
                    if unit.has_data:
                        delivered = True
                        self._early_sse = 0
                    healthy = unit.has_data
                    unit = self._complete(unit, skip)
                    # Only data proves the connection healthy: a proxy may end it after each
                    # keep-alive, and that must not reset the backoff.
                    assert unit.end is not None
                    self._advance(unit.end, healthy=healthy)
                    yield unit
                    if self.finished:
                        return  # never reconnect after streamClosed
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        # The server ended the connection; data after the last control is re-sent.
        early = controls == 0 or (
            not delivered and anyio.current_time() - started < EARLY_SSE_SECONDS
        )
        if not early:
            self._early_sse = 0
            self._backoff.reset()
            self._reconnected()
            return  # reconnect at once
        # Ended at once: back off like after an error (auto mode counts these to fall back).
        raise NetworkError(
            f"read (sse) connection to {self._where} ended early "
            f"({controls} control events in {anyio.current_time() - started:.2f}s)",
            url=response.request.url,
        )


_sleep = anyio.sleep  # the pacing wait (replaced in tests)


class _Stopped(Exception):
    """Internal: the session was stopped while waiting on the network."""


def _refuses_sse(error: DurableStreamError) -> bool:
    """A status that means "no SSE here" rather than "no such stream/offset"."""
    return isinstance(error, NotSupportedError) or type(error) is BadRequestError
