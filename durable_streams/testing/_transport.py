"""An ``httpx.AsyncBaseTransport`` that hands requests to a server in the same process.

No sockets, no threads: the request is answered by awaiting the server's handler on the caller's
event loop (asyncio or trio), and a live body (SSE) is handed over chunk by chunk as the server
produces it. httpx's read timeout is honoured (waiting for the answer and for each chunk raises
``httpx.ReadTimeout``), an injected dropped connection raises ``httpx.RemoteProtocolError`` as a
real one does, and httpcore's ``trace`` extension hears ``send_request_body.complete`` once the
body is handed over (the SDK's producer pipelines on it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx

from ._wire import Handler, Request


class _LiveBody(httpx.AsyncByteStream):
    """A response body still being produced; closing it stops the producer."""

    def __init__(self, chunks: AsyncIterator[bytes], request: httpx.Request, timeout: float | None):
        self.chunks = chunks
        self.request = request
        self.timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = aiter(self.chunks)
        limit = self.timeout if self.timeout is not None else float("inf")
        while True:
            chunk: bytes | None = None
            with anyio.move_on_after(limit) as scope:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught or chunk is None:
                raise httpx.ReadTimeout("in-process read timed out", request=self.request)
            yield chunk

    async def aclose(self) -> None:
        closer = getattr(self.chunks, "aclose", None)
        if closer is not None:
            await closer()


class InProcessTransport(httpx.AsyncBaseTransport):
    """Answers httpx requests with a handler in this process (see ``InMemoryServer.transport``).

    Example::

        client = httpx.AsyncClient(transport=InProcessTransport(server.handle))
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        trace = request.extensions.get("trace")
        if trace is not None:  # as httpcore reports it: the request is now "on the wire"
            await trace("http11.send_request_body.complete", {"request": request})
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        headers: dict[str, str] = {}
        for name, value in request.headers.multi_items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        url = request.url
        base = f"{url.scheme}://{url.netloc.decode('ascii')}"
        served = Request(
            method=request.method,
            path=url.raw_path.split(b"?", 1)[0].decode("ascii"),
            query=list(url.params.multi_items()),
            headers=headers,
            body=body,
            base_url=base,
        )
        reply = None
        with anyio.move_on_after(read_timeout if read_timeout is not None else float("inf")):
            reply = await self.handler(served)
        if reply is None:
            raise httpx.ReadTimeout("in-process read timed out", request=request)
        if reply.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if reply.stream is not None:
            return httpx.Response(
                reply.status,
                headers=reply.headers,
                stream=_LiveBody(reply.stream, request, read_timeout),
                request=request,
            )
        return httpx.Response(
            reply.status, headers=reply.headers, content=reply.body, request=request
        )
