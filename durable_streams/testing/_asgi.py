"""The server as an ASGI 3 application, so any ASGI server (uvicorn) serves it over real HTTP.

Live bodies (SSE) are sent chunk by chunk; a client that disconnects stops them at once. An
injected dropped connection aborts the socket when the ASGI server exposes it (uvicorn does, on
the ``send`` callable's cycle); elsewhere the response is abandoned before it starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.lowlevel

from ._wire import Handler, Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class DroppedConnection(Exception):
    """Raised to the ASGI server when it gives no way to drop a connection silently."""


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


async def _abort(send: Send) -> None:
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if abort is None:
        raise DroppedConnection("injected fault: drop the connection")
    abort()
    # Let the server see the connection is lost, so it sends no error response of its own.
    await anyio.lowlevel.checkpoint()
    await anyio.lowlevel.checkpoint()


class AsgiApp:
    """An ASGI application answering with a request handler (see ``InMemoryServer.asgi``).

    Example::

        uvicorn.run(AsgiApp(server.handle), port=4437)
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").split("?", 1)[0] if raw_path else scope["path"]
        request = Request(
            method=scope["method"],
            path=path,
            query=parse_qsl(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            ),
            headers=headers,
            body=bytes(body),
            base_url=_base_url(scope, headers),
        )
        reply = await self.handler(request)
        if reply.drop:
            await _abort(send)
            return
        headers_out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        if reply.stream is None and reply.status not in (204, 304) and request.method != "HEAD":
            headers_out.append((b"content-length", str(len(reply.body)).encode("ascii")))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers_out})
        if reply.stream is None:
            await send({"type": "http.response.body", "body": reply.body})
            return
        chunks = reply.stream
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            try:
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    with anyio.CancelScope(shield=True):
                        await closer()
            group.cancel_scope.cancel()

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
