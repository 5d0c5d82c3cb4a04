"""The in-memory Durable Streams server: HTTP semantics on top of :mod:`._store`.

:class:`InMemoryServer` answers :class:`~._wire.Request` objects; :meth:`InMemoryServer.client`
reaches it in-process (no sockets) and :attr:`InMemoryServer.asgi` over real HTTP (uvicorn).
Status codes, headers, ETags, cursors and SSE framing follow the pinned reference server
(``@durable-streams/server``) except where noted in ``docs`` and the README.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from durable_streams import InvalidArgumentError

from ._asgi import AsgiApp
from ._faults import Fault, Faults, fault_from_json
from ._store import (
    Budget,
    CreateRequest,
    Page,
    ProtocolFailure,
    Store,
    Stream,
    format_offset,
    media_type,
    parse_expires_at,
    parse_offset,
    parse_producer,
)
from ._subscriptions import Subscriptions, control_root
from ._transport import InProcessTransport
from ._wire import Reply, Request

INJECT_PATH = "/_test/inject-error"
#: Where in-process URLs point: no such host is ever contacted.
IN_PROCESS_URL = "http://durable-streams.test"

_CURSOR_EPOCH = 1728432000.0  # 2024-10-09T00:00:00Z
_OFFSET_RE = re.compile(r"^(-1|now|\d+_\d+)$")
_FORK_OFFSET_RE = re.compile(r"^\d+_\d+$")
_DECIMAL_RE = re.compile(r"^(0|[1-9]\d*)$")
_CONTENT_TYPE_RE = re.compile(r"^[\w-]+/[\w-]+")
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")

_COMMON_HEADERS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, POST, PUT, DELETE, HEAD, OPTIONS"),
    (
        "access-control-allow-headers",
        "content-type, authorization, if-none-match, Stream-Seq, Stream-TTL, Stream-Expires-At, "
        "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, "
        "Stream-Fork-Offset, Stream-Fork-Sub-Offset",
    ),
    (
        "access-control-expose-headers",
        "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Producer-Epoch, "
        "Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, etag, content-type, "
        "content-encoding, vary",
    ),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-resource-policy", "cross-origin"),
]


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        [("content-type", "text/plain"), *(headers or {}).items()],
        text.encode("utf-8"),
    )


def _json_body(parts: list[bytes]) -> bytes:
    return b"[" + b",".join(parts) + b"]"


def _base64_over_sse(stream: Stream) -> bool:
    """SSE carries binary streams in base64: all but ``text/*`` and ``application/json``."""
    return not (stream.json or media_type(stream.content_type).startswith("text/"))


def _sse_event(kind: str, payload: str) -> bytes:
    lines = _LINE_BREAK_RE.split(payload)
    return (f"event: {kind}\n" + "\n".join(f"data:{line}" for line in lines) + "\n\n").encode()


class InMemoryServer:
    """A Durable Streams server in memory, faithful to the protocol, for tests and local use.

    One implementation, three ways to reach it: in-process with :meth:`client` (an
    ``httpx.AsyncClient`` on an in-process transport: no sockets, live long-poll and SSE), over
    HTTP with :attr:`asgi` (``python -m durable_streams.testing`` serves it with uvicorn), and
    through the pytest fixtures of :mod:`durable_streams.testing.pytest_plugin`.

    ``page_size`` caps how many messages one read response carries (JSON messages; appends for
    other streams) and ``page_bytes`` how many body bytes (a JSON message is never cut, an append
    of bytes may be); None, the default, puts the whole rest of the stream in one response like
    the reference server. Either lets tests exercise multi-response catch-ups (and SSE events).
    Pull-wake subscriptions (§7) live in :attr:`subscriptions` (its ``clock`` drives leases).
    ``long_poll_timeout`` (seconds) bounds long-polls and
    spaces SSE keep-alives; ``sse_reconnect_interval`` ends SSE responses after that many
    seconds (the protocol's CDN advice; None: never).

    Example::

        server = InMemoryServer(page_size=100)
        async with StreamHandle(server.stream_url("chat"), client=server.client()) as handle:
            await handle.create(content_type="application/json")
    """

    def __init__(
        self,
        *,
        page_size: int | None = None,
        page_bytes: int | None = None,
        long_poll_timeout: float = 30.0,
        sse_reconnect_interval: float | None = None,
        cursor_interval: float = 20.0,
        url: str = IN_PROCESS_URL,
    ) -> None:
        for name, value in (("page_size", page_size), ("page_bytes", page_bytes)):
            if value is not None and value < 1:
                raise InvalidArgumentError(f"{name} must be at least 1 (or None)", field=name)
        self.page_size = page_size
        self.page_bytes = page_bytes
        self.long_poll_timeout = long_poll_timeout
        self.sse_reconnect_interval = sse_reconnect_interval
        self.cursor_interval = cursor_interval
        self.url = url.rstrip("/")
        self.store = Store()
        self.faults = Faults()
        self.subscriptions = Subscriptions(self.store)

    # -- public helpers ---------------------------------------------------------------------

    def stream_url(self, name: str) -> str:
        """The URL of stream ``name`` under ``/v1/stream/``.

        Example::

            url = server.stream_url("orders")   # "http://durable-streams.test/v1/stream/orders"
        """
        return f"{self.url}/v1/stream/{name}"

    def transport(self) -> InProcessTransport:
        """An ``httpx.AsyncBaseTransport`` that answers from this server, in-process.

        Example::

            client = httpx.AsyncClient(transport=server.transport())
        """
        return InProcessTransport(self.handle)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` reaching this server in-process (extra arguments go to httpx).

        Example::

            async with server.client() as client:
                handle = StreamHandle(server.stream_url("s"), client=client)
        """
        kwargs.setdefault("timeout", httpx.Timeout(30.0, read=self.long_poll_timeout + 30.0))
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    @property
    def asgi(self) -> AsgiApp:
        """This server as an ASGI application (for uvicorn or any ASGI server).

        Example::

            uvicorn.run(InMemoryServer().asgi, port=4437)
        """
        return AsgiApp(self.handle)

    def inject(
        self,
        path: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        drop: bool = False,
        delay: float = 0.0,
        jitter: float = 0.0,
        truncate: int | None = None,
        corrupt: bool = False,
        sse_event: tuple[str, str] | None = None,
        count: int = 1,
        probability: float | None = None,
        method: str | None = None,
    ) -> None:
        """Make the next ``count`` requests to ``path`` fail; replaces that path's fault.

        ``path`` is a URL path (or a whole URL). ``status`` answers with that status (and
        ``Retry-After: retry_after``); ``drop`` closes the connection with no response;
        ``delay`` (+ up to ``jitter``) seconds pass first; ``truncate`` cuts a GET 200 body to
        that many bytes and ``corrupt`` garbles it; ``sse_event=(type, data)`` comes before an
        SSE response's own events. ``method`` limits the fault to one method; ``probability``
        (0-1) makes it random, and a miss does not use up ``count``. The same as
        ``POST /_test/inject-error`` on the reference server.

        Example::

            server.inject(url, status=503, retry_after=1, count=2, method="POST")
        """
        if "://" in path:
            path = httpx.URL(path).path
        self.faults.add(
            path,
            Fault(
                count=count,
                status=status,
                retry_after=retry_after,
                delay=delay,
                jitter=jitter,
                drop=drop,
                truncate=truncate,
                corrupt=corrupt,
                probability=probability,
                method=method,
                sse_event=sse_event,
            ),
        )

    def clear_faults(self) -> None:
        """Remove every injected fault (``DELETE /_test/inject-error``).

        Example::

            server.clear_faults()
        """
        self.faults.clear()

    def clear(self) -> None:
        """Delete every stream (waiting readers are woken and see 404; subscriptions keep
        their configs but lose their links, as after a ``DELETE`` of each stream).

        Example::

            server.clear()
        """
        for path in list(self.store.streams):
            self.subscriptions.on_delete(path)
        self.store.clear()

    # -- dispatch ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        """Answer one request (what both transports call).

        Example::

            reply = await server.handle(Request("HEAD", "/v1/stream/x", [], {}, b"", server.url))
        """
        reply = await self._handle(request)
        reply.headers[:0] = _COMMON_HEADERS
        return reply

    async def _handle(self, request: Request) -> Reply:
        method = request.method.upper()
        self.subscriptions.expire()  # a lease that ran out while nobody asked
        if method == "OPTIONS":
            return Reply(204)
        if request.path == INJECT_PATH:
            return self._inject_endpoint(method, request.body)
        fault = self.faults.consume(request.path, method)
        if fault is not None:
            if fault.delay or fault.jitter:
                await anyio.sleep(fault.delay + random.random() * fault.jitter)
            if fault.drop:
                return Reply(0, drop=True)
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["retry-after"] = str(fault.retry_after)
                return _text(fault.status, "Injected error for testing", headers)
        root = control_root(request.path)
        if root is not None:
            return self.subscriptions.answer(request, method, root)
        try:
            if method == "PUT":
                return self._create(request)
            if method == "HEAD":
                return self._head(request)
            if method == "GET":
                return await self._read(request, fault)
            if method == "POST":
                return self._append(request)
            if method == "DELETE":
                self.store.delete(request.path)
                self.subscriptions.on_delete(request.path)
                return Reply(204)
            return _text(405, "Method not allowed")
        except ProtocolFailure as failure:
            if method == "HEAD":
                return Reply(failure.status, [("content-type", "text/plain")])
            return _text(failure.status, failure.text, failure.headers)

    def _inject_endpoint(self, method: str, body: bytes) -> Reply:
        if method == "POST":
            try:
                path, fault = fault_from_json(body)
            except ValueError as exc:
                return _text(400, str(exc))
            self.faults.by_path[path] = fault
            return Reply(200, [("content-type", "application/json")], b'{"ok":true}')
        if method == "DELETE":
            self.faults.clear()
            return Reply(200, [("content-type", "application/json")], b'{"ok":true}')
        return _text(405, "Method not allowed")

    # -- create, head, append ---------------------------------------------------------------

    def _create(self, request: Request) -> Reply:
        headers = request.headers
        forked_from = headers.get("stream-forked-from")
        content_type = headers.get("content-type")
        if not content_type or not content_type.strip() or not _CONTENT_TYPE_RE.match(content_type):
            content_type = None if forked_from else "application/octet-stream"
        ttl_text, expires_at = headers.get("stream-ttl"), headers.get("stream-expires-at")
        if ttl_text and expires_at:
            raise ProtocolFailure(400, "Cannot specify both Stream-TTL and Stream-Expires-At")
        ttl: int | None = None
        if ttl_text:
            if not _DECIMAL_RE.match(ttl_text):
                raise ProtocolFailure(400, "Invalid Stream-TTL value")
            ttl = int(ttl_text)
        if expires_at and parse_expires_at(expires_at) is None:
            raise ProtocolFailure(400, "Invalid Stream-Expires-At timestamp")
        fork_offset = headers.get("stream-fork-offset") or None
        if fork_offset is not None and not _FORK_OFFSET_RE.match(fork_offset):
            raise ProtocolFailure(400, "Invalid Stream-Fork-Offset format")
        sub_text = headers.get("stream-fork-sub-offset")
        sub: int | None = None
        if sub_text is not None:
            if not forked_from:
                raise ProtocolFailure(400, "Stream-Fork-Sub-Offset requires Stream-Forked-From")
            if not _DECIMAL_RE.match(sub_text):
                raise ProtocolFailure(400, "Invalid Stream-Fork-Sub-Offset format")
            sub = int(sub_text)
        stream, created = self.store.create(
            CreateRequest(
                path=request.path,
                content_type=content_type,
                ttl=ttl,
                expires_at=expires_at or None,
                closed=headers.get("stream-closed") == "true",
                body=request.body,
                forked_from=forked_from or None,
                fork_offset=fork_offset,
                fork_sub_offset=sub,
            )
        )
        if created:
            stream.notify()
            if request.body:  # the reference reports a create with a body as an append
                self.subscriptions.on_append(request.path)
        reply_headers = [
            ("content-type", stream.content_type),
            ("stream-next-offset", stream.next_offset),
        ]
        if created:
            reply_headers.append(("location", f"{request.base_url}{request.path}"))
        if stream.closed:
            reply_headers.append(("stream-closed", "true"))
        return Reply(201 if created else 200, reply_headers)

    def _head(self, request: Request) -> Reply:
        stream = self.store.live(request.path)
        headers = [
            ("stream-next-offset", stream.next_offset),
            ("cache-control", "no-store"),
            ("content-type", stream.content_type),
        ]
        if stream.closed:
            headers.append(("stream-closed", "true"))
        if stream.ttl is not None:
            headers.append(("stream-ttl", str(stream.ttl)))
        if stream.expires_at:
            headers.append(("stream-expires-at", stream.expires_at))
        headers.append(("etag", self._etag(stream, "-1", stream.next_offset, stream.closed)))
        return Reply(200, headers)

    def _append(self, request: Request) -> Reply:
        headers = request.headers
        producer = parse_producer(
            headers.get("producer-id"), headers.get("producer-epoch"), headers.get("producer-seq")
        )
        close = headers.get("stream-closed") == "true"
        body = request.body
        if not body and not close:
            raise ProtocolFailure(400, "Empty body")
        content_type = headers.get("content-type")
        if body and not content_type:
            raise ProtocolFailure(400, "Content-Type header is required")
        outcome = self.store.append(
            request.path,
            body,
            content_type=content_type,
            seq=headers.get("stream-seq"),
            close=close,
            producer=producer,
        )
        if outcome.appended:
            self.subscriptions.on_append(request.path)
        return Reply(outcome.status, list(outcome.headers.items()))

    # -- reading ----------------------------------------------------------------------------

    def _cursor(self, client_cursor: str | None) -> str:
        """The response cursor: the current interval, or past the client's (PROTOCOL §5)."""
        current = math.floor((time.time() - _CURSOR_EPOCH) / self.cursor_interval)
        match = re.match(r"^\s*[+-]?\d+", client_cursor or "")
        if match is None:
            return str(current)
        theirs = int(match.group())
        if theirs < current:
            return str(current)
        jitter = random.randint(1, 3600)
        return str(theirs + max(1, math.ceil(jitter / self.cursor_interval)))

    @staticmethod
    def _etag(stream: Stream, start: str, end: str, closed: bool) -> str:
        encoded = base64.b64encode(stream.path.encode("utf-8")).decode("ascii")
        return f'"{encoded}:{start}:{end}{":c" if closed else ""}"'

    def _page(self, stream: Stream, position: int, *, whole_chars: bool = False) -> Page:
        page = self.store.page(stream, position, Budget(self.page_size, self.page_bytes))
        if whole_chars and page.end < stream.tail:
            # Text over SSE is decoded per event: never end a page inside a UTF-8 character.
            following = b"".join(self.store.page(stream, page.end, Budget(None, 3)).parts)
            extra = len(following) - len(following.lstrip(bytes(range(0x80, 0xC0))))
            if extra:
                rest = self.store.page(stream, page.end, Budget(None, extra))
                page = Page(start=page.start, end=rest.end, parts=page.parts + rest.parts)
        return page

    async def _read(self, request: Request, fault: Fault | None) -> Reply:
        stream = self.store.live(request.path)
        offsets = request.params("offset")
        offset = offsets[0] if offsets else None
        if offset is not None:
            if offset == "":
                raise ProtocolFailure(400, "Empty offset parameter")
            if len(offsets) > 1:
                raise ProtocolFailure(400, "Multiple offset parameters not allowed")
            if not _OFFSET_RE.match(offset):
                raise ProtocolFailure(400, "Invalid offset format")
        live = request.param("live")
        cursor = request.param("cursor")
        if live in ("long-poll", "sse") and not offset:
            name = "SSE" if live == "sse" else "Long-poll"
            raise ProtocolFailure(400, f"{name} requires offset parameter")

        position = self._position(stream, offset)
        if live == "sse":
            return self._sse(stream, position, cursor, fault)
        self.store.touch(stream)
        if offset == "now" and live != "long-poll":
            headers = [
                ("stream-next-offset", stream.next_offset),
                ("stream-up-to-date", "true"),
                ("cache-control", "no-store"),
                ("content-type", stream.content_type),
            ]
            if stream.closed:
                headers.append(("stream-closed", "true"))
            return Reply(200, headers, b"[]" if stream.json else b"")

        page = self._page(stream, position)
        if live == "long-poll" and page.empty and position == stream.tail:
            requested = format_offset(position)
            if stream.closed:
                return Reply(
                    204,
                    [
                        ("stream-next-offset", requested),
                        ("stream-up-to-date", "true"),
                        ("stream-closed", "true"),
                    ],
                )
            await self._wait(stream, position, self.long_poll_timeout)
            current = self.store.get(request.path)
            if current is not stream or current is None:  # deleted while we waited
                raise ProtocolFailure(404, "Stream not found")
            if current.soft_deleted:
                raise ProtocolFailure(410, "Stream is gone")
            stream = current  # the same stream; its state changed while we waited
            self.store.touch(stream)
            page = self._page(stream, position)
            if page.empty:
                headers = [
                    ("stream-next-offset", requested),
                    ("stream-up-to-date", "true"),
                    ("stream-cursor", self._cursor(cursor)),
                ]
                if stream.closed:
                    headers.append(("stream-closed", "true"))
                return Reply(204, headers)

        end = page.end if position <= stream.tail else stream.tail
        up_to_date = end >= stream.tail
        closed_here = stream.closed and up_to_date
        next_offset = format_offset(end)
        headers = [("content-type", stream.content_type), ("stream-next-offset", next_offset)]
        if live == "long-poll":
            headers.append(("stream-cursor", self._cursor(cursor)))
        if up_to_date:
            headers.append(("stream-up-to-date", "true"))
        if closed_here:
            headers.append(("stream-closed", "true"))
        etag = self._etag(stream, offset or "-1", next_offset, closed_here)
        if request.headers.get("if-none-match") == etag:
            return Reply(304, [("etag", etag)])
        headers.append(("etag", etag))
        body = _json_body(page.parts) if stream.json else b"".join(page.parts)
        if fault is not None and fault.changes_body:
            body = fault.apply_to_body(body)
        return Reply(200, headers, body)

    @staticmethod
    def _position(stream: Stream, offset: str | None) -> int:
        if offset is None or offset == "-1":
            return 0
        if offset == "now":
            return stream.tail
        parsed = parse_offset(offset)
        assert parsed is not None
        high, position = parsed
        # Past the tail (or in a later "high" space): an empty answer at the tail.
        return position if high == 0 else stream.tail + 1

    async def _wait(self, stream: Stream, position: int, timeout: float) -> bool:
        """:meth:`Store.wait`, also waking when a subscription lease runs out.

        An expired lease re-wakes its subscription by appending to a wake stream, which the
        workers waiting here must see without another request (the reference uses a timer).
        """
        end = anyio.current_time() + timeout
        while True:
            self.subscriptions.expire()
            now = anyio.current_time()
            if self.store.changed(stream, position):
                return True
            if now >= end:
                return False
            # The lease clock may not be this one (a test's own): wait a duration, not until.
            due_in = self.subscriptions.next_due_in()
            wait = end - now if due_in is None else min(end - now, due_in)
            await self.store.wait(stream, position, wait, also=self.subscriptions.schedule_waiters)

    # -- SSE --------------------------------------------------------------------------------

    def _sse(self, stream: Stream, position: int, cursor: str | None, fault: Fault | None) -> Reply:
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        if _base64_over_sse(stream):
            headers.append(("stream-sse-data-encoding", "base64"))
        injected = fault.sse_event if fault is not None else None
        events = self._sse_events(stream, min(position, stream.tail), cursor, injected)
        return Reply(200, headers, stream=events)

    def _sse_payload(self, stream: Stream, page: Page, base64_data: bool) -> str:
        if stream.json:
            return _json_body(page.parts).decode("utf-8")
        data = b"".join(page.parts)
        if base64_data:
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8", errors="replace")

    def _control(
        self, next_offset: int, cursor: str | None, *, at_tail: bool, closed: bool
    ) -> bytes:
        control: dict[str, Any] = {"streamNextOffset": format_offset(next_offset)}
        if closed:  # upToDate is implied (the reference server omits it, and so do we)
            control["streamClosed"] = True
        else:
            control["streamCursor"] = self._cursor(cursor)
            if at_tail:
                control["upToDate"] = True
        return _sse_event("control", json.dumps(control, separators=(",", ":")))

    async def _sse_events(
        self,
        stream: Stream,
        position: int,
        cursor: str | None,
        injected: tuple[str, str] | None,
    ) -> AsyncIterator[bytes]:
        """One SSE response: every data event is followed by its control event (PROTOCOL §5.8)."""
        base64_data = _base64_over_sse(stream)
        text = not stream.json and not base64_data
        if injected is not None:
            yield f"event: {injected[0]}\ndata: {injected[1]}\n\n".encode()
        deadline = (
            math.inf
            if self.sse_reconnect_interval is None
            else time.monotonic() + self.sse_reconnect_interval
        )
        emit_control = True
        while True:  # each turn sends, or waits at most long_poll_timeout; cancellable
            if self.store.get(stream.path) is not stream or stream.soft_deleted:
                return
            self.store.touch(stream)
            page = self._page(stream, position, whole_chars=text)
            # A data event and its control event go out in one write: a reader never sees
            # one without the other in the same chunk.
            data = b""
            if not page.empty:
                data = _sse_event("data", self._sse_payload(stream, page, base64_data))
                position = page.end
                emit_control = True
            at_tail = position >= stream.tail
            if stream.closed and at_tail:
                yield data + self._control(position, cursor, at_tail=True, closed=True)
                return
            if emit_control:
                yield data + self._control(position, cursor, at_tail=at_tail, closed=False)
            if not at_tail:
                continue
            if time.monotonic() >= deadline:
                return
            woke = await self._wait(
                stream, position, min(self.long_poll_timeout, deadline - time.monotonic())
            )
            emit_control = not woke  # a keep-alive after a quiet timeout
