"""Fixtures of the conformance run: its own reference server and one adapter process.

The server uses the 500 ms long-poll timeout the cases are written for
(YAML-CASES.md §1), so it is separate from the suite's shared server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.server.harness import ReferenceServer, start_server

from .adapter_client import AdapterClient
from .runner import Context

CONFORMANCE_LONG_POLL_MS = 500


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "conformance: a case of the official YAML conformance suite (via the adapter)"
    )


@pytest.fixture(scope="session")
def conformance_server() -> Iterator[ReferenceServer]:
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
    conformance_server: ReferenceServer, conformance_http: httpx.Client
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
