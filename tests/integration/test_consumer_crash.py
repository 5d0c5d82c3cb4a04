"""Crash tests: a worker process is SIGKILLed at 20 random moments and restarted until done.

The stream holds 50,000 JSON items, some of them 16 KiB, so that one catch-up
response holds thousands of items (far more than a worker handles before some
of its kills). Kill moments are chosen by counting the worker's progress lines,
never by sleeping. At-least-once (file checkpoints every 200 items, worker on
asyncio): every item's effect is there, and each restart repeats at most 200.
Exactly-once (effects and position in one SQLite transaction, worker on trio):
every item's effect exactly once.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.consumer_worker import PROGRESS_EVERY, WINDOW
from tests.server.harness import ReferenceServer

ITEMS = 50_000
KILLS = 20
REPO = Path(__file__).resolve().parents[2]


def fill(url: str) -> int:
    """Create the stream; returns the most items one catch-up response holds."""
    with httpx.Client(timeout=30) as client:
        assert client.put(url, headers={"content-type": "application/json"}).status_code == 201
        for start in range(0, ITEMS, 2500):
            items = [
                {"n": n, "pad": "x" * 16384} if n % 1000 == 999 else {"n": n}
                for n in range(start, start + 2500)
            ]
            posted = client.post(url, json=items)
            assert posted.status_code == 204, posted.text
        first = client.get(url, params={"offset": "-1"})
        return len(json.loads(first.content))


def run_worker(url: str, mode: str, state: Path, backend: str, kill_after: int | None) -> bool:
    """One worker run: SIGKILLed after ``kill_after`` progress lines; whether it finished."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.consumer_worker", url, mode, str(state), backend],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(state / "worker.err").open("ab"),
    )
    assert worker.stdout is not None
    lines = 0
    try:
        for raw in worker.stdout:
            line = raw.decode().strip()
            if line == "done":
                return worker.wait(timeout=30) == 0
            lines += line.startswith("progress")
            if kill_after is not None and lines >= kill_after:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=30)
                return False
        worker.wait(timeout=30)
        raise AssertionError(f"worker exited with {worker.returncode} without 'done'")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        worker.stdout.close()


def crash_until_done(
    url: str, mode: str, state: Path, backend: str, seed: int, kills: int = KILLS
) -> int:
    """``kills`` (20) killed runs (half of them early: a few hundred items into a response of
    thousands), then runs until one finishes. Returns the number of runs."""
    rng = random.Random(seed)
    runs = 0
    for kill in range(kills):
        # At least WINDOW items before a kill, so a run commits something.
        early = WINDOW // PROGRESS_EVERY + 1
        kill_after = early + rng.randint(0, 2) if kill % 2 == 0 else rng.randint(early, 60)
        runs += 1
        if run_worker(url, mode, state, backend, kill_after):
            return runs
    for _ in range(5):
        runs += 1
        if run_worker(url, mode, state, backend, None):
            return runs
    raise AssertionError("the worker never finished")


def at_least_once_runs(state: Path) -> list[list[int]]:
    runs: list[list[int]] = []
    for line in (state / "effects.log").read_text().splitlines():
        if line == "start":
            runs.append([])
        else:
            runs[-1].append(int(line))
    return runs


@pytest.mark.slow
def test_at_least_once_survives_20_kills(server: ReferenceServer, tmp_path: Path) -> None:
    url = server.stream_url("crash-at-least-once")
    largest = fill(url)
    assert largest > 2000  # one response holds thousands of items
    runs = crash_until_done(url, "at-least-once", tmp_path, "asyncio", seed=1)
    assert runs > KILLS
    effects = at_least_once_runs(tmp_path)
    seen = [n for run in effects for n in run]
    assert set(seen) == set(range(ITEMS))  # every item processed
    # Each run starts where a saved position says: at most WINDOW items are seen again,
    # and every run moves forward, even those killed a few hundred items into a response.
    repeats = []
    for before, after in itertools.pairwise(effects):
        assert after, "a run handled nothing"
        assert after[0] > (before[0] if before else -1)  # progress across every kill
        repeated = before[-1] - after[0] + 1 if before else 0
        assert 0 <= repeated <= WINDOW
        repeats.append(repeated)
    for run in effects:
        assert run == list(range(run[0], run[0] + len(run)))  # in order, no gap
    assert effects[-1][-1] == ITEMS - 1
    print(
        f"\n{len(effects)} runs, {len(seen) - ITEMS} items re-processed "
        f"(largest response {largest} items): {repeats}"
    )


@pytest.mark.slow
def test_exactly_once_survives_20_kills(server: ReferenceServer, tmp_path: Path) -> None:
    url = server.stream_url("crash-exactly-once")
    fill(url)
    runs = crash_until_done(url, "exactly-once", tmp_path, "trio", seed=2)
    assert runs > KILLS
    with sqlite3.connect(tmp_path / "app.db") as db:
        total, distinct = db.execute("SELECT count(*), count(DISTINCT n) FROM effects").fetchone()
        low, high = db.execute("SELECT min(n), max(n) FROM effects").fetchone()
    db.close()
    assert (total, distinct, low, high) == (ITEMS, ITEMS, 0, ITEMS - 1)


@pytest.mark.slow
def test_the_sync_consumer_is_exactly_once_through_6_kills(
    server: ReferenceServer, tmp_path: Path
) -> None:
    url = server.stream_url("crash-sync-exactly-once")
    fill(url)
    runs = crash_until_done(url, "sync-exactly-once", tmp_path, "-", seed=3, kills=6)
    assert runs > 6
    with sqlite3.connect(tmp_path / "app.db") as db:
        total, distinct = db.execute("SELECT count(*), count(DISTINCT n) FROM effects").fetchone()
    db.close()
    assert (total, distinct) == (ITEMS, ITEMS)
