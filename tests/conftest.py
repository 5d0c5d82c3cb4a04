"""Fixtures shared by the whole suite.

Async tests use anyio's pytest plugin (``@pytest.mark.anyio``) and run on both
asyncio and trio unless a module narrows ``anyio_backend``. Integration tests
get one server per session and a fresh stream URL each.

Which server (the "target"):

- default: the pinned reference server (the judge of truth), started here;
- ``DURABLE_STREAMS_TEST_URL=http://host:port``: any running server; fault
  injection tests are skipped, with the reason, if it has no ``/_test/inject-error``;
- ``DURABLE_STREAMS_TEST_SERVER=python``: ``python -m durable_streams.testing``
  over HTTP (uvicorn), started here;
- ``DURABLE_STREAMS_TEST_SERVER=python-inprocess``: the same server in this
  process: every ``httpx.AsyncHTTPTransport`` request to its URL is answered by
  its in-process transport, so tests that make their own clients need no change.

``DURABLE_STREAMS_TEST_PAGE_SIZE=N`` (messages) and ``DURABLE_STREAMS_TEST_PAGE_BYTES=N``
make the Python server answer reads in small pieces, so no test can assume one
response holds a stream.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import httpx
import pytest

from durable_streams.testing import InMemoryServer
from tests.server.harness import start_python_server, start_server

#: Long-poll timeout of the test server: short, so tests that wait it out stay fast.
TEST_LONG_POLL_MS = 1000

TEST_URL = os.environ.get("DURABLE_STREAMS_TEST_URL", "").rstrip("/")
TEST_SERVER = os.environ.get("DURABLE_STREAMS_TEST_SERVER", "reference")
TEST_PAGE_SIZE = int(os.environ.get("DURABLE_STREAMS_TEST_PAGE_SIZE") or 0) or None
TEST_PAGE_BYTES = int(os.environ.get("DURABLE_STREAMS_TEST_PAGE_BYTES") or 0) or None
TARGETS = ("reference", "python", "python-inprocess")


class ServerTarget(Protocol):
    """What integration tests use of a server, whichever it is."""

    url: str

    def stream_url(self, name: str) -> str: ...

    def inject_fault(self, path: str, **fields: Any) -> None: ...

    def clear_faults(self) -> None: ...

    def stop(self) -> None: ...


class ExternalServer:
    """A server someone else runs (``DURABLE_STREAMS_TEST_URL``)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stream_url(self, name: str) -> str:
        return f"{self.url}/v1/stream/{name}"

    def has_fault_injection(self) -> bool:
        try:
            response = httpx.delete(f"{self.url}/_test/inject-error", timeout=10)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def inject_fault(self, path: str, **fields: Any) -> None:
        if "://" in path:
            path = httpx.URL(path).path
        response = httpx.post(
            f"{self.url}/_test/inject-error", json={"path": path, **fields}, timeout=10
        )
        if response.status_code != 200:
            raise RuntimeError(f"inject-error failed: {response.status_code} {response.text}")

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/_test/inject-error", timeout=10)

    def stop(self) -> None:
        pass


class InProcessServer:
    """``durable_streams.testing.InMemoryServer`` in this process, reached through httpx."""

    def __init__(self, page_size: int | None, page_bytes: int | None, long_poll_ms: int) -> None:
        self.server = InMemoryServer(
            page_size=page_size, page_bytes=page_bytes, long_poll_timeout=long_poll_ms / 1000
        )
        self.url = self.server.url
        self.transport = self.server.transport()

    def stream_url(self, name: str) -> str:
        return self.server.stream_url(name)

    def inject_fault(self, path: str, **fields: Any) -> None:
        """The reference endpoint's JSON fields, mapped onto ``InMemoryServer.inject``."""
        event = fields.get("injectSseEvent")
        self.server.inject(
            path,
            status=fields.get("status"),
            retry_after=fields.get("retryAfter"),
            drop=bool(fields.get("dropConnection")),
            delay=fields.get("delayMs", 0) / 1000,
            jitter=fields.get("jitterMs", 0) / 1000,
            truncate=fields.get("truncateBodyBytes"),
            corrupt=bool(fields.get("corruptBody")),
            sse_event=(event["eventType"], event["data"]) if event else None,
            count=fields.get("count", 1),
            probability=fields.get("probability"),
            method=fields.get("method"),
        )

    def clear_faults(self) -> None:
        self.server.clear_faults()

    def stop(self) -> None:
        pass


def _start_target() -> ServerTarget:
    if TEST_URL:
        return ExternalServer(TEST_URL)
    if TEST_SERVER not in TARGETS:
        raise pytest.UsageError(f"DURABLE_STREAMS_TEST_SERVER must be one of {TARGETS}")
    if TEST_SERVER == "python":
        return start_python_server(
            long_poll_timeout_ms=TEST_LONG_POLL_MS,
            page_size=TEST_PAGE_SIZE,
            page_bytes=TEST_PAGE_BYTES,
        )
    if TEST_SERVER == "python-inprocess":
        return InProcessServer(TEST_PAGE_SIZE, TEST_PAGE_BYTES, TEST_LONG_POLL_MS)
    return start_server(long_poll_timeout_ms=TEST_LONG_POLL_MS)


def pytest_report_header() -> str:
    target = TEST_URL or TEST_SERVER
    pages = f"page size {TEST_PAGE_SIZE or '-'}, page bytes {TEST_PAGE_BYTES or '-'}"
    return f"durable streams test server: {target} ({pages})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (never skip) what the chosen target cannot run: see the markers."""
    unfit = set()
    if not TEST_URL and TEST_SERVER != "reference" and (TEST_PAGE_SIZE or TEST_PAGE_BYTES):
        unfit.add("whole_responses")
    if not TEST_URL and TEST_SERVER == "python-inprocess":
        unfit.add("sockets")
    if not TEST_URL and TEST_SERVER != "reference":
        unfit.add("subscriptions")  # durable_streams.testing has pull-wake only, no webhooks
    if not unfit:
        return
    kept = [item for item in items if not unfit & {mark.name for mark in item.iter_markers()}]
    deselected = [item for item in items if item not in kept]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerTarget]:
    """The session's server (see the module docstring), stopped by PID if started here."""
    started = _start_target()
    try:
        if isinstance(started, InProcessServer):
            yield from _routed_in_process(started)
        else:
            yield started
    finally:
        started.stop()


def _routed_in_process(target: InProcessServer) -> Iterator[ServerTarget]:
    """Send every httpx request for ``target.url`` to its in-process transport."""
    host = httpx.URL(target.url).host
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def routed(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        if request.url.host == host:
            return await target.transport.handle_async_request(request)
        return await original(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", routed)
        yield target


@pytest.fixture
def server_url(server: ServerTarget) -> str:
    return server.url


@pytest.fixture
def stream_url(server: ServerTarget) -> str:
    """A URL no other test uses (the stream does not exist yet)."""
    return server.stream_url(f"test-{uuid.uuid4().hex}")


@pytest.fixture
def faults(server: ServerTarget) -> Iterator[ServerTarget]:
    """The server, for ``faults.inject_fault(path, status=503, ...)``; cleared after the test.

    Skipped, with the reason, when an external target has no ``/_test/inject-error``.
    """
    if isinstance(server, ExternalServer) and not server.has_fault_injection():
        pytest.skip(f"the target server {server.url} has no /_test/inject-error (fault injection)")
    server.clear_faults()
    try:
        yield server
    finally:
        server.clear_faults()
