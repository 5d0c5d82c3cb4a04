"""Fixtures shared by the whole suite.

Async tests use anyio's pytest plugin (``@pytest.mark.anyio``) and run on both
asyncio and trio unless a module narrows ``anyio_backend``. Integration tests
get the pinned reference server (one per session) and a fresh stream URL each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.server.harness import ReferenceServer, start_server

#: Long-poll timeout of the test server: short, so tests that wait it out stay fast.
TEST_LONG_POLL_MS = 1000


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server() -> Iterator[ReferenceServer]:
    """The reference server, started once per session and stopped by PID."""
    started = start_server(long_poll_timeout_ms=TEST_LONG_POLL_MS)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def server_url(server: ReferenceServer) -> str:
    return server.url


@pytest.fixture
def stream_url(server: ReferenceServer) -> str:
    """A URL no other test uses (the stream does not exist yet)."""
    return server.stream_url(f"test-{uuid.uuid4().hex}")


@pytest.fixture
def faults(server: ReferenceServer) -> Iterator[ReferenceServer]:
    """The server, for ``faults.inject_fault(path, status=503, ...)``; cleared after the test."""
    server.clear_faults()
    try:
        yield server
    finally:
        server.clear_faults()
