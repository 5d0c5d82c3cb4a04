"""The official server conformance suite against ``durable_streams.testing`` over real HTTP.

``@durable-streams/server-conformance-tests`` (pinned in ``tests/server_conformance/``, installed
by ``scripts/dev``) runs under vitest against ``python -m durable_streams.testing`` (uvicorn) on
127.0.0.1. Every case must pass; the only cases not run are the suite's own opt-in subscription
block (PROTOCOL §7): all but one of its cases need webhooks, which this server refuses (its
pull-wake case passes; pull-wake is tested in ``test_subscriptions.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.harness import start_python_server

SUITE_DIR = Path(__file__).resolve().parent.parent / "server_conformance"
LONG_POLL_MS = 1000
#: The suite's own opt-in block (``subscriptions: true``), not run: it is mostly webhooks.
NOT_RUN_BLOCK = "Reserved subscription APIs"
SUITE_TIMEOUT = 300


def _vitest() -> Path:
    vitest = SUITE_DIR / "node_modules" / ".bin" / "vitest"
    if shutil.which("node") is None or not vitest.exists():
        pytest.fail(
            f"the server conformance suite is not installed: run `npm ci` in {SUITE_DIR} "
            "(scripts/dev does this)"
        )
    return vitest


def test_official_server_conformance_suite(tmp_path: Path) -> None:
    vitest = _vitest()
    report_path = tmp_path / "report.json"
    server = start_python_server(long_poll_timeout_ms=LONG_POLL_MS)
    try:
        completed = subprocess.run(
            [
                str(vitest),
                "run",
                "conformance.test.mjs",
                "--reporter=json",
                f"--outputFile={report_path}",
            ],
            cwd=SUITE_DIR,
            env={
                **os.environ,
                "CONFORMANCE_TEST_URL": server.url,
                "CONFORMANCE_LONG_POLL_MS": str(LONG_POLL_MS),
                "NO_COLOR": "1",
            },
            capture_output=True,
            timeout=SUITE_TIMEOUT,
            check=False,
        )
    finally:
        server.stop()
    if not report_path.exists():
        pytest.fail(
            f"vitest wrote no report:\n{completed.stdout[-3000:]!r}\n{completed.stderr[-3000:]!r}"
        )
    report = json.loads(report_path.read_text())
    results = [case for file in report["testResults"] for case in file["assertionResults"]]
    failed = [case["fullName"] for case in results if case["status"] == "failed"]
    not_run = [case for case in results if case["status"] not in ("passed", "failed")]
    passed = sum(case["status"] == "passed" for case in results)
    print(f"server conformance: {passed} passed, {len(failed)} failed, {len(not_run)} not run")
    assert failed == [], "\n".join(failed)
    assert all(NOT_RUN_BLOCK in case["ancestorTitles"] for case in not_run), not_run
    assert passed >= 300, f"only {passed} cases ran: is the suite installed whole?"
    assert completed.returncode == 0
