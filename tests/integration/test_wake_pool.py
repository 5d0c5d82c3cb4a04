"""A pool of 3 WakeWorker processes over 50 streams, one of them SIGKILLed mid-wake.

10 pull-wake subscriptions (5 streams each, linked by pattern) share one wake
stream; items are appended in rounds while the workers run. Half-way, one stream
gets a "stall" item: the first worker to handle it hangs in its handler (holding
the lease and heartbeating) and says so; the test SIGKILLs it then, mid-wake. Its
lease (1.5 s) expires and another worker goes on from the last ack, the stall item
included. Checked from the workers' records:

- every appended item was handled at least once (none lost);
- leases are exclusive: per subscription, no ack of a wake succeeded after a
  later wake of it was claimed (fenced wakes never ack), and wakes succeed each
  other in generation order;
- the pool drains: every stream acked to its tail, every claim NO_PENDING_WORK;
- the surviving workers stop cleanly on SIGTERM (their wakes released).
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerTarget

# Worker subprocesses reach the server over a real socket.
pytestmark = [pytest.mark.subscriptions, pytest.mark.sockets]

REPO = Path(__file__).resolve().parents[2]
SUBSCRIPTIONS = 10
STREAMS_PER_SUBSCRIPTION = 5
ROUNDS = 6
LEASE_TTL_MS = 1500
BACKENDS = ("asyncio", "trio", "asyncio")
DEADLINE = 40.0  # seconds for the whole run: a bound against hangs, not a speed claim


class Worker:
    """A worker process and its records, read by a thread as they come."""

    def __init__(self, root: str, ids: list[str], name: str, backend: str, state: Path) -> None:
        self.name = name
        self.records: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.wake_pool_worker",
                root,
                ",".join(ids),
                name,
                backend,
                str(state / "stalled"),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=(state / f"{name}.err").open("wb"),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self.changed:
                self.records.append(json.loads(raw))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, predicate: Any, deadline: float) -> None:
        with self.changed:
            while not predicate(self.records):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{self.name}: timed out; records: {self.records[-5:]}"
                assert self.process.poll() is None or self.reader.is_alive(), (
                    f"{self.name} exited with {self.process.returncode}"
                )
                self.changed.wait(min(remaining, 0.5))

    def snapshot(self) -> list[dict[str, Any]]:
        with self.changed:
            return list(self.records)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.reader.join(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def items(workers: list[Worker]) -> list[dict[str, Any]]:
    return [r for w in workers for r in w.snapshot() if r["e"] == "item"]


def test_pool_survives_a_killed_worker_and_drains(server: ServerTarget, tmp_path: Path) -> None:
    start = time.monotonic()
    deadline = start + DEADLINE
    root = f"{server.url}/v1/stream"
    prefix = f"pool-{uuid.uuid4().hex[:10]}"
    ids = [f"{prefix}-sub{k}" for k in range(SUBSCRIPTIONS)]
    paths = [
        f"{prefix}/s{k}/{j}" for k in range(SUBSCRIPTIONS) for j in range(STREAMS_PER_SUBSCRIPTION)
    ]
    control = f"{root}/__ds/subscriptions"
    json_type = {"content-type": "application/json"}
    workers: list[Worker] = []
    with httpx.Client(timeout=30) as http:
        for path in [f"{prefix}/wakes", *paths]:
            assert http.put(f"{root}/{path}", headers=json_type).status_code == 201
        for k, sid in enumerate(ids):
            config = {
                "type": "pull-wake",
                "pattern": f"{prefix}/s{k}/*",
                "wake_stream": f"{prefix}/wakes",
                "lease_ttl_ms": LEASE_TTL_MS,
            }
            assert http.put(f"{control}/{sid}", json=config).status_code == 201
        try:
            for n, backend in enumerate(BACKENDS):
                workers.append(Worker(root, ids, f"w{n}", backend, tmp_path))
            for worker in workers:
                worker.wait_for(lambda records: any(r["e"] == "ready" for r in records), deadline)

            victim: Worker | None = None
            appended: set[tuple[str, int]] = set()
            for round_ in range(ROUNDS):
                for path in paths:
                    item: dict[str, Any] = {"n": round_}
                    if round_ == ROUNDS // 2 and path == paths[0]:
                        item["stall"] = True
                    posted = http.post(f"{root}/{path}", json=[item], headers=json_type)
                    assert posted.status_code == 204, posted.text
                    appended.add((path, round_))
                if round_ == ROUNDS // 2:
                    victim = kill_the_stalled_worker(workers, deadline)
                # Pacing by progress: the next round once the pool caught up (but 25).
                wait_until(
                    lambda: len({(r["s"], r["n"]) for r in items(workers)}) >= len(appended) - 25,
                    deadline,
                    "the pool to handle the appended items",
                )
            assert victim is not None

            # The pool drains: every stream acked to its tail, then nothing to claim.
            tails = {
                path: http.head(f"{root}/{path}").headers["stream-next-offset"] for path in paths
            }
            wait_until(lambda: drained(http, control, ids, tails), deadline, "the pool to drain")
            for sid in ids:
                probe = http.post(f"{control}/{sid}/claim", json={"worker": "probe"})
                assert probe.status_code == 409, probe.text
                assert probe.json()["error"]["code"] == "NO_PENDING_WORK"

            survivors = [w for w in workers if w is not victim]
            for worker in survivors:
                worker.process.send_signal(signal.SIGTERM)
            for worker in survivors:
                assert worker.process.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
                worker.reader.join(timeout=10)
                assert worker.snapshot()[-1]["e"] == "stopped"
        finally:
            for worker in workers:
                worker.stop()

    handled = items(workers)
    # None lost: every appended item was handled by some worker.
    assert {(r["s"], r["n"]) for r in handled} >= appended
    assert {(r["s"], r["n"]) for r in handled} <= appended
    check_exclusive_leases(workers)
    # The killed worker held the stalled wake: another worker took it over (a higher
    # generation) and handled the item it hung on.
    assert victim is not None
    hung = next(r for r in victim.snapshot() if r["e"] == "stalled")
    assert not any(
        ((r["e"] == "acked" and r["done"]) or r["e"] == "release")
        and (r["sub"], r["g"]) == (hung["sub"], hung["g"])
        for r in victim.snapshot()
    )
    takeovers = [
        r
        for w in workers
        if w is not victim
        for r in w.snapshot()
        if r["e"] == "item" and r["s"] == hung["s"] and r["n"] == ROUNDS // 2 and r["g"] > hung["g"]
    ]
    assert takeovers, f"nobody handled the item {victim.name} hung on"
    assert time.monotonic() - start < DEADLINE


def kill_the_stalled_worker(workers: list[Worker], deadline: float) -> Worker:
    """SIGKILL the worker that hangs on the stall item (it holds that wake's lease)."""

    def stalled() -> Worker | None:
        for worker in workers:
            if any(r["e"] == "stalled" for r in worker.snapshot()):
                return worker
        return None

    wait_until(lambda: stalled() is not None, deadline, "a worker to stall")
    victim = stalled()
    assert victim is not None
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=30)
    return victim


def wait_until(condition: Any, deadline: float, what: str) -> None:
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling the workers' records and the server: no synchronisation


def drained(http: httpx.Client, control: str, ids: list[str], tails: dict[str, str]) -> bool:
    for sid in ids:
        info = http.get(f"{control}/{sid}").json()
        for link in info["streams"]:
            if link["acked_offset"] != tails[link["path"]]:
                return False
    return True


def check_exclusive_leases(workers: list[Worker]) -> None:
    """Per subscription: a wake's successful acks were all sent before the next wake
    (a higher generation) was claimed, and one generation belongs to one worker."""
    claims: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    acks: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    sent: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for worker in workers:
        for r in worker.snapshot():
            if r["e"] == "claim":
                claims[r["sub"]].append((r["g"], r["t"], worker.name))
            elif r["e"] == "ack":
                sent[(worker.name, r["sub"], r["g"])].append(r["t"])
            elif r["e"] == "acked" and r["ok"]:
                # The ack was sent at or before the latest "ack" record of this wake.
                acks[(r["sub"], r["g"])].append(
                    (sent[(worker.name, r["sub"], r["g"])][-1], worker.name)
                )
    assert claims, "no wake was ever claimed"
    for sid, wakes in claims.items():
        wakes.sort()
        owners: dict[int, str] = {}
        for generation, _, name in wakes:
            assert owners.setdefault(generation, name) == name, (sid, generation, wakes)
        for (generation, _, name), (later, claimed_at, _) in itertools.pairwise(wakes):
            if later == generation:
                continue
            for sent_at, acker in acks[(sid, generation)]:
                assert acker == name
                assert sent_at <= claimed_at, (
                    f"{sid}: wake {generation} of {name} acked after wake {later} was claimed"
                )
