"""What every scenario shares: sizes, result rows, statistics, fair interleaving,
machine facts, the memory sampler and the results table."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx

import durable_streams
from tests.server.harness import ReferenceServer

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

JSON_TYPE = "application/json"
BYTES_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does; ``--quick`` shrinks all of it."""

    rounds: int  # interleaved SDK/raw rounds for the latency scenarios
    latency_samples: int  # requests per variant per round (scenarios 1, 2)
    warmup: int
    catchup_messages: int
    catchup_rounds: int
    producer_messages: int
    producer_rounds: int
    tail_samples: int  # per variant per round (scenario 5)
    memory_mib: int
    memory_rounds: int
    fanout_readers: int
    fanout_appends: int


FULL = Sizes(
    # p99 of sub-millisecond requests needs many samples: 12 x 1,000 puts 120 behind
    # each p99 (with 3,000 the SDK/raw p99 ratio swung 0.8x-1.4x between runs).
    rounds=12,
    latency_samples=1000,
    warmup=500,
    catchup_messages=200_000,
    catchup_rounds=3,
    producer_messages=200_000,
    producer_rounds=3,
    tail_samples=50,
    memory_mib=100,
    memory_rounds=2,
    fanout_readers=1000,
    fanout_appends=7,
)

QUICK = Sizes(
    rounds=2,
    latency_samples=150,
    warmup=30,
    catchup_messages=20_000,
    catchup_rounds=1,
    producer_messages=20_000,
    producer_rounds=1,
    tail_samples=15,
    memory_mib=10,
    memory_rounds=1,
    fanout_readers=100,
    fanout_appends=3,
)


@dataclass
class Row:
    """One line of the results table: a figure for the SDK and for the raw baseline."""

    scenario: str
    metric: str
    unit: str
    sdk: float | None
    raw: float | None
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.sdk is None or self.raw is None or self.raw == 0:
            return None
        return self.sdk / self.raw


@dataclass
class Bench:
    """What a scenario gets: the server, the sizes and a source of fresh stream URLs."""

    server: ReferenceServer
    sizes: Sizes
    quick: bool

    def new_url(self, label: str) -> str:
        return self.server.stream_url(f"bench-{label}-{uuid.uuid4().hex[:12]}")


def raw_client() -> httpx.AsyncClient:
    """The baseline's one shared client: a plain ``httpx.AsyncClient`` built with the
    same timeouts, pool limits and default headers as the SDK's own client."""
    return durable_streams.new_client()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


async def interleaved(
    rounds: int,
    sdk: Callable[[], Awaitable[T]],
    raw: Callable[[], Awaitable[T]],
) -> tuple[list[T], list[T]]:
    """Run SDK and baseline alternately (ABBA...), so drift in machine load hits both."""
    sdk_results: list[T] = []
    raw_results: list[T] = []
    for index in range(rounds):
        if index % 2 == 0:
            sdk_results.append(await sdk())
            raw_results.append(await raw())
        else:
            raw_results.append(await raw())
            sdk_results.append(await sdk())
    return sdk_results, raw_results


async def timed_samples(count: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    """``count`` sequential calls, each one's latency in seconds."""
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        start = clock()
        await call()
        samples.append(clock() - start)
    return samples


async def compare_latency(
    sizes: Sizes,
    sdk_call: Callable[[], Awaitable[object]],
    raw_call: Callable[[], Awaitable[object]],
) -> tuple[list[list[float]], list[list[float]]]:
    """Warm both up, then time ``sizes.rounds`` interleaved rounds of sequential calls."""
    await timed_samples(sizes.warmup, sdk_call)
    await timed_samples(sizes.warmup, raw_call)
    return await interleaved(
        sizes.rounds,
        lambda: timed_samples(sizes.latency_samples, sdk_call),
        lambda: timed_samples(sizes.latency_samples, raw_call),
    )


def latency_rows(
    scenario: str,
    sdk_rounds: list[list[float]],
    raw_rounds: list[list[float]],
    *,
    max_ratio: float | None = None,
    target: str = "",
) -> list[Row]:
    """p50 and p99 rows in ms over all rounds' samples pooled (a per-round p99 would rest
    on the few slowest requests of each round; the interleaving already shares drift)."""
    rows = []
    for q in (50, 99):
        sdk = percentile([s for r in sdk_rounds for s in r], q) * 1000
        raw = percentile([s for r in raw_rounds for s in r], q) * 1000
        row = Row(scenario, f"p{q}", "ms", sdk, raw, target=target)
        if max_ratio is not None and row.ratio is not None:
            row.met = row.ratio <= max_ratio
        rows.append(row)
    return rows


def check_status(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        try:
            body = response.text[:200]
        except httpx.ResponseNotRead:  # a streamed response
            body = ""
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code} {body!r}"
        )
    return response


# -- process facts ------------------------------------------------------------------------------


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (1,000 live readers need the fds).
    Child processes (the server) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def open_sockets() -> int:
    """Sockets this process holds open right now (from /proc/self/fd)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def kernel_peak_rss() -> int:
    """The kernel's peak RSS of this process (VmHWM) in bytes, or 0 if unknown."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples this process's resident set size from a thread every ``interval``
    seconds; ``peak_growth`` is the highest sample minus the RSS at start."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.start_rss = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.start_rss = self.peak_rss = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, rss_bytes())

    @property
    def peak_growth(self) -> int:
        return self.peak_rss - self.start_rss


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _node_version() -> str:
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _server_version() -> str:
    manifest = REPO_ROOT / "tests/server/node_modules/@durable-streams/server/package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def machine_facts(backend: str) -> dict[str, str]:
    load = os.getloadavg()
    return {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        "memory": _mem_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else _dist("anyio"),
        "durable_streams": durable_streams.__version__,
        "async backend": backend,
        "node": _node_version(),
        "reference server": f"@durable-streams/server {_server_version()}",
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "host": socket.gethostname(),
    }


def _dist(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


# -- output --------------------------------------------------------------------------------------


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if not unit:
        return f"{value:g}"
    if unit in ("msg/s",):
        return f"{value:,.0f} {unit}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def format_table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table (printed, and pasted into docs/benchmarks.md)."""
    lines = [
        "| Scenario | Metric | SDK | raw httpx | SDK / raw | Target | Met | Note |",
        "|---|---|---:|---:|---:|---|:-:|---|",
    ]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        lines.append(
            f"| {row.scenario} | {row.metric} | {_figure(row.sdk, row.unit)} | "
            f"{_figure(row.raw, row.unit)} | {ratio} | {row.target} | {met} | {row.note} |"
        )
    return "\n".join(lines)


def format_facts(facts: dict[str, str]) -> str:
    return "\n".join(f"- {name}: {value}" for name, value in facts.items())


def write_json(
    path: Path, facts: dict[str, str], rows: Sequence[Row], meta: dict[str, Any]
) -> None:
    payload = {
        "machine": facts,
        **meta,
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
