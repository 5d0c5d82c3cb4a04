"""Run one hostile case: a scripted server here, the SDK in a subprocess, then checks.

Every case gets a stream URL with credentials in it (userinfo password, a
``token`` query value) and an ``Authorization`` header; the report lists every
place any of them showed up, and :func:`check` fails the test on any.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.hostile.server import Handler, HostileServer, serving

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "pw-SECRET-1"
TOKEN = "tok-SECRET-2"
BEARER = "bearer-SECRET-3"
#: httpx turns URL userinfo into "Authorization: Basic base64(user:password)": a secret too.
BASIC = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
SECRETS = [PASSWORD, TOKEN, BEARER, "SECRET-", BASIC]

#: Peak RSS growth (MiB) allowed for any case that does not state its own: the SDK's
#: own buffers, the event loop and one retry's worth of httpx state.
DEFAULT_RSS_MIB = 24.0


@dataclass
class Report:
    """What the client subprocess reported, plus what the server saw."""

    raw: dict[str, Any]
    server: HostileServer

    @property
    def ok(self) -> bool:
        return bool(self.raw["ok"])

    @property
    def result(self) -> Any:
        return self.raw["result"]

    @property
    def error(self) -> dict[str, Any]:
        error = self.raw["error"]
        assert error is not None, f"expected an error, got result {self.raw['result']!r}"
        return dict(error)

    @property
    def requests(self) -> int:
        return len(self.server.requests)

    def __str__(self) -> str:
        shown = {k: v for k, v in self.raw.items() if k != "log_sample"}
        logs = "\n    ".join(self.raw.get("log_sample", [])[-15:])
        shown_json = json.dumps(shown, indent=1, default=repr)
        return f"{shown_json}\n requests={self.requests}\n logs:\n    {logs}"


def stream_url(server: HostileServer, path: str = "/v1/stream/s") -> str:
    return f"http://user:{PASSWORD}@127.0.0.1:{server.port}{path}?token={TOKEN}"


def run(
    handler: Handler,
    action: str,
    args: dict[str, Any] | None = None,
    *,
    handle: dict[str, Any] | None = None,
    url: str | None = None,
    guard: float = 20.0,
    backend: str = "asyncio",
) -> Report:
    """Serve ``handler``, run ``action`` in a fresh interpreter against it, and report."""
    with serving(handler) as server:
        handle_kwargs = {"headers": {"Authorization": f"Bearer {BEARER}"}, **(handle or {})}
        spec = {
            "url": url if url is not None else stream_url(server),
            "action": action,
            "args": args or {},
            "handle": handle_kwargs,
            "guard": guard,
            "backend": backend,
            "secrets": SECRETS,
        }
        stdout, stderr, returncode = _run_client(spec, timeout=guard + 30)
        lines = stdout.strip().splitlines()
        if returncode != 0 or not lines:
            raise AssertionError(
                f"client crashed (rc={returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
            )
        return Report(json.loads(lines[-1]), server)


class _ForkServer:
    """One ``tests.hostile.client --serve`` process: each case runs in a child forked
    from it, a fresh process with the imports already done (a spawn costs ~0.7 s)."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.client", "--serve"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._pending = b""
        atexit.register(self.close)

    def run(self, spec: dict[str, Any], timeout: float) -> tuple[str, str, int]:
        stdin = self.process.stdin
        assert stdin is not None
        with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            stdin.write(json.dumps({**spec, "stdout": str(out), "stderr": str(err)}).encode())
            stdin.write(b"\n")
            stdin.flush()
            pid = int(self._line(None))
            line = self._line(timeout)
            if not line:
                # The case outlived its guard: kill it (its pid is not reused before the
                # server reaps it, which is what prints "done").
                os.kill(pid, signal.SIGKILL)
                line = self._line(None)
            if not line.startswith("done "):
                raise AssertionError(f"the fork server ended: {line!r}")
            return out.read_text(), err.read_text(), int(line.split()[1])

    def _line(self, timeout: float | None) -> str:
        """The server's next line ("" after ``timeout`` seconds): unbuffered reads, so
        nothing waits in a buffer where select cannot see it."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([stdout], [], [], wait)
            if not ready:
                return ""
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                return self._pending.decode()
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=10)


_fork_server: _ForkServer | None = None


def _run_client(spec: dict[str, Any], *, timeout: float) -> tuple[str, str, int]:
    """Run one case in a fresh child process: forked from the fork server (POSIX)."""
    global _fork_server
    if _fork_server is None or _fork_server.process.poll() is not None:
        _fork_server = _ForkServer()
    return _fork_server.run(spec, timeout)


def check(
    report: Report,
    *,
    error: str | None = None,
    code: str | None = None,
    max_rss_mib: float = DEFAULT_RSS_MIB,
    max_requests: int | None = None,
    max_cpu_s: float = 5.0,
    max_wall_s: float | None = None,
) -> None:
    """The checks every case makes: outcome, memory, requests, CPU, and no secret anywhere."""
    raw = report.raw
    assert not raw["guard_hit"], f"the call hung until the harness guard:\n{report}"
    assert not raw["leaks"], "secrets leaked:\n" + "\n".join(raw["leaks"])
    if error is None:
        assert raw["ok"], f"expected success:\n{report}"
    else:
        assert not raw["ok"], f"expected {error}, got success:\n{report}"
        found = raw["error"]
        assert found["typed"], f"not a DurableStreamError:\n{report}"
        assert error in found["mro"], f"expected {error}:\n{report}"
        if code is not None:
            assert found["code"] == code, f"expected code {code}:\n{report}"
    assert raw["rss_growth_mib"] <= max_rss_mib, (
        f"peak RSS grew {raw['rss_growth_mib']:.1f} MiB > {max_rss_mib} MiB:\n{report}"
    )
    if max_requests is not None:
        assert report.requests <= max_requests, (
            f"{report.requests} requests > {max_requests}:\n{report}"
        )
    assert raw["cpu_s"] <= max_cpu_s, f"CPU {raw['cpu_s']:.2f}s > {max_cpu_s}s:\n{report}"
    if max_wall_s is not None:
        assert raw["wall_s"] <= max_wall_s, f"took {raw['wall_s']:.2f}s > {max_wall_s}s:\n{report}"
