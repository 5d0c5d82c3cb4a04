"""Fixtures of the conformance run: its own server and one adapter process.

The server uses the 500 ms long-poll timeout the cases are written for
(YAML-CASES.md §1), so it is separate from the suite's shared server. It is the
reference server, or the Python one with ``DURABLE_STREAMS_TEST_SERVER=python``
(then ``DURABLE_STREAMS_TEST_PAGE_SIZE``/``_BYTES`` apply), or any server at
``DURABLE_STREAMS_TEST_URL`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import (
    TEST_PAGE_BYTES,
    TEST_PAGE_SIZE,
    TEST_SERVER,
    TEST_URL,
    ExternalServer,
    ServerTarget,
)
from tests.server.harness import start_python_server, start_server

from .adapter_client import AdapterClient
from .runner import Context

CONFORMANCE_LONG_POLL_MS = 500


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "conformance: a case of the official YAML conformance suite (via the adapter)"
    )


@pytest.fixture(scope="session")
def conformance_server() -> Iterator[ServerTarget]:
    started: ServerTarget
    if TEST_URL:
        started = ExternalServer(TEST_URL)
    elif TEST_SERVER == "python":
        started = start_python_server(
            long_poll_timeout_ms=CONFORMANCE_LONG_POLL_MS,
            page_size=TEST_PAGE_SIZE,
            page_bytes=TEST_PAGE_BYTES,
        )
    elif TEST_SERVER == "python-inprocess":
        raise pytest.UsageError("the conformance adapter is a process: use the python target")
    else:
        started = start_server(long_poll_timeout_ms=CONFORMANCE_LONG_POLL_MS)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def conformance_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


@pytest.fixture(scope="session")
def conformance(
    conformance_server: ServerTarget, conformance_http: httpx.Client
) -> Iterator[Context]:
    """The reference server plus the project's adapter, started and ``init``-ed once."""
    adapter = AdapterClient()
    adapter.start(conformance_server.url)
    try:
        yield Context(
            server_url=conformance_server.url,
            adapter=adapter,
            http=conformance_http,
            stricter=os.environ.get("DURABLE_STREAMS_CONFORMANCE_STRICTER") == "1",
        )
    finally:
        adapter.stop()
