"""A protocol-faithful Durable Streams server in memory, for tests, demos and local development.

No Node, no sockets needed: :class:`InMemoryServer` answers in-process through
:meth:`InMemoryServer.client` (live long-poll and SSE included), over HTTP as an ASGI app
(``python -m durable_streams.testing --port 4437``, needs the ``[server]`` extra for uvicorn), and
through pytest fixtures (``pytest_plugins = ["durable_streams.testing.pytest_plugin"]``).
Faults are injected with :meth:`InMemoryServer.inject` or ``POST /_test/inject-error``.
Pull-wake subscriptions (PROTOCOL §7) work as on the reference server; webhook subscriptions
are refused (400 ``INVALID_REQUEST``).

Example::

    from durable_streams import StreamHandle
    from durable_streams.testing import InMemoryServer

    server = InMemoryServer(page_size=2)          # reads come back two messages at a time
    async with StreamHandle(server.stream_url("chat"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append_many([{"n": 1}, {"n": 2}, {"n": 3}])
        server.inject(handle.url, status=503, count=1)   # the next request fails once
        items = await (await handle.stream(live=False)).json()   # retried: [{"n": 1}, ...]
"""

from ._asgi import AsgiApp
from ._faults import Fault
from ._server import IN_PROCESS_URL, InMemoryServer
from ._transport import InProcessTransport
from ._wire import Reply, Request

__all__ = [
    "IN_PROCESS_URL",
    "AsgiApp",
    "Fault",
    "InMemoryServer",
    "InProcessTransport",
    "Reply",
    "Request",
]
