"""Scripted misbehaving HTTP servers on 127.0.0.1, written on raw asyncio sockets.

A :class:`HostileServer` runs an asyncio loop in a thread of the test process
(so its memory and CPU never count against the client, which runs in a
subprocess). It parses each request head itself, records it, and hands it to the
case's handler, which writes whatever bytes it likes: broken framing, endless
bodies, lies. Every request the client sends is in ``server.requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: The largest request head the server reads (a client sending more is broken too).
MAX_HEAD = 256 * 1024


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


class Conn:
    """The server side of one connection, for handlers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def respond(
        self,
        status: int,
        headers: Iterable[tuple[str, str]] | dict[str, str] = (),
        body: bytes = b"",
        *,
        reason: str = "X",
        length: bool = True,
    ) -> None:
        """A complete response with Content-Length (unless ``length=False``)."""
        await self.send(head(status, headers, len(body) if length else None, reason=reason) + body)

    async def chunked(
        self,
        status: int,
        headers: Iterable[tuple[str, str]] | dict[str, str],
        chunks: Iterable[bytes],
        *,
        end: bool = True,
    ) -> None:
        """A chunked response from ``chunks`` (an iterator may be endless)."""
        items = list(headers.items()) if isinstance(headers, dict) else list(headers)
        await self.send(head(status, [*items, ("Transfer-Encoding", "chunked")], None))
        for chunk in chunks:
            if chunk:
                await self.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if end:
            await self.send(b"0\r\n\r\n")


def head(
    status: int,
    headers: Iterable[tuple[str, str]] | dict[str, str],
    length: int | None,
    *,
    reason: str = "X",
) -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if length is not None:
        items.append(("Content-Length", str(length)))
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def repeat(chunk: bytes, total: int | None = None) -> Iterator[bytes]:
    """``chunk`` over and over: ``total`` bytes in all, or forever."""
    sent = 0
    while total is None or sent < total:
        piece = chunk if total is None else chunk[: total - sent]
        sent += len(piece)
        yield piece


Handler = Callable[[Request, Conn, "HostileServer"], Awaitable[bool | None]]
"""Answers one request; returns True to keep the connection for another request."""


class HostileServer:
    """A raw-socket HTTP/1.1 server in a background thread; ``handler`` scripts it."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0
        self.state: dict[str, object] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostileServer:
        self._thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        loop.run_forever()
        loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    def _shutdown(self) -> None:
        assert self._loop is not None
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        self._loop.call_later(0.05, self._loop.stop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        conn = Conn(reader, writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                keep = await self.handler(request, conn, self)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):  # the client may have gone already
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(part[:-2] for part in parts)
    return Request(method, target, headers, body)


@contextmanager
def serving(handler: Handler) -> Iterator[HostileServer]:
    server = HostileServer(handler).start()
    try:
        yield server
    finally:
        server.stop()
