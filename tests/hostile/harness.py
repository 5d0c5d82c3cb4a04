"""Run one hostile case: a scripted server here, the SDK in a subprocess, then checks.

Every case gets a stream URL with credentials in it (userinfo password, a
``token`` query value) and an ``Authorization`` header; the report lists every
place any of them showed up, and :func:`check` fails the test on any.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
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
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "tests.hostile.client", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=guard + 30,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise AssertionError(
                f"client crashed (rc={done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return Report(json.loads(lines[-1]), server)


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
