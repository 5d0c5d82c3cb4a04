"""Start and stop a Durable Streams server process from Python.

The pinned reference server (``launch.mjs``) or the project's own in-memory
server (``python -m durable_streams.testing``), which print the same
``{"url": ...}`` line and answer the same ``/_test/inject-error`` endpoint.
Used by the test suite's session fixture, the conformance runners and the
benchmarks. The server runs as a child process on 127.0.0.1 with port 0; it is
stopped by PID (the reference server also stops when our end of its stdin closes).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SERVER_DIR = Path(__file__).resolve().parent
LAUNCHER = SERVER_DIR / "launch.mjs"
START_TIMEOUT = 30.0


class ServerStartError(RuntimeError):
    pass


@dataclass
class ReferenceServer:
    """A running server process (the reference server or ours): its base URL and process."""

    url: str
    process: subprocess.Popen[bytes]

    def stream_url(self, name: str) -> str:
        return f"{self.url}/v1/stream/{name}"

    def inject_fault(self, path: str, **fields: Any) -> None:
        """POST /_test/inject-error; ``path`` is the stream path (or full URL)."""
        if "://" in path:
            path = httpx.URL(path).path
        body = {"path": path, **fields}
        response = httpx.post(f"{self.url}/_test/inject-error", json=body, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"inject-error failed: {response.status_code} {response.text}")

    def clear_faults(self) -> None:
        """DELETE /_test/inject-error: remove every injected fault."""
        httpx.delete(f"{self.url}/_test/inject-error", timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_server(*, long_poll_timeout_ms: int = 30_000) -> ReferenceServer:
    """Start the reference server and wait until it answers HTTP."""
    node = shutil.which("node")
    if node is None:
        raise ServerStartError("node is not on PATH; the reference server needs Node 18+")
    if not (SERVER_DIR / "node_modules" / "@durable-streams" / "server").is_dir():
        raise ServerStartError(
            f"the reference server is not installed: run `npm ci` in {SERVER_DIR} "
            "(scripts/dev does this)"
        )
    process = subprocess.Popen(
        [node, str(LAUNCHER), "--long-poll-timeout", str(long_poll_timeout_ms)],
        cwd=SERVER_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "NODE_ENV": "test"},
    )
    return _wait_until_serving(process, "the reference server")


def start_python_server(
    *,
    long_poll_timeout_ms: int = 30_000,
    page_size: int | None = None,
    page_bytes: int | None = None,
) -> ReferenceServer:
    """Start ``python -m durable_streams.testing`` (uvicorn) and wait until it answers HTTP."""
    command = [
        sys.executable,
        "-m",
        "durable_streams.testing",
        "--port",
        "0",
        "--long-poll-timeout",
        str(long_poll_timeout_ms / 1000),
        "--exit-on-stdin-close",
    ]
    if page_size is not None:
        command += ["--page-size", str(page_size)]
    if page_bytes is not None:
        command += ["--page-bytes", str(page_bytes)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return _wait_until_serving(process, "the Python server")


def _wait_until_serving(process: subprocess.Popen[bytes], name: str) -> ReferenceServer:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if not line:
        process.kill()
        raise ServerStartError(f"{name} did not print its URL")
    url = json.loads(line)["url"].rstrip("/")
    server = ReferenceServer(url=url, process=process)
    while True:  # it printed after listening; one request proves it serves
        try:
            httpx.head(f"{url}/v1/stream/__harness_probe__", timeout=2)
            return server
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                server.stop()
                raise ServerStartError(f"{name} at {url} does not answer") from None
            time.sleep(0.05)


@contextmanager
def running_server(*, long_poll_timeout_ms: int = 30_000) -> Iterator[ReferenceServer]:
    server = start_server(long_poll_timeout_ms=long_poll_timeout_ms)
    try:
        yield server
    finally:
        server.stop()
