"""Pytest fixtures: an in-memory Durable Streams server, a client for it, a fresh stream URL.

Installed with the package (a ``pytest11`` entry point), or opt in explicitly with
``pytest_plugins = ["durable_streams.testing.pytest_plugin"]``. The fixtures are plain (not async),
so they work with anyio (asyncio and trio), pytest-asyncio and pytest-trio alike; each test gets
its own server, created in microseconds. Configure it per test or module with a marker::

    @pytest.mark.durable_streams(page_size=2, long_poll_timeout=0.5)

Example::

    async def test_roundtrip(ds_client, ds_stream_url):
        async with StreamHandle(ds_stream_url, client=ds_client) as handle:
            await handle.create(content_type="application/json")
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from ._server import InMemoryServer

MARKER = "durable_streams"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the ds_server fixture's InMemoryServer "
        "(page_size=..., long_poll_timeout=..., sse_reconnect_interval=...)",
    )


@pytest.fixture
def ds_server(request: pytest.FixtureRequest) -> InMemoryServer:
    """A fresh in-memory server (options from the nearest ``durable_streams`` marker).

    Example::

        def test_faults(ds_server):
            ds_server.inject("/v1/stream/x", status=503)
    """
    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    return InMemoryServer(**options)


@pytest.fixture
def ds_client(ds_server: InMemoryServer) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` reaching ``ds_server`` in-process (pass it as ``client=``).

    It holds no sockets, so it needs no closing.

    Example::

        handle = StreamHandle(ds_stream_url, client=ds_client)
    """
    return ds_server.client()


@pytest.fixture
def ds_stream_url(ds_server: InMemoryServer) -> str:
    """The URL of a stream that does not exist yet on ``ds_server``.

    Example::

        await StreamHandle(ds_stream_url, client=ds_client).create()
    """
    return ds_server.stream_url(f"test-{uuid.uuid4().hex}")
