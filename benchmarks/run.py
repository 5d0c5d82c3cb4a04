"""Benchmarks: the SDK against a raw-httpx baseline doing the same HTTP work.

Starts the pinned reference server, runs every scenario for the SDK and for a
baseline that uses one plain ``httpx.AsyncClient`` (no SDK), interleaved in the
same process against the same server, and prints a table with both figures,
their ratio and the machine facts.

    scripts/dev bench                       # full run (2-3 minutes here)
    scripts/dev bench --quick               # smaller counts, under a minute
    scripts/dev bench --only catchup        # one scenario (e.g. while profiling)
    scripts/dev bench --json results.json   # also write the results as JSON

Not part of the test suite: nothing here decides CI's pass/fail.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

# Run as a script: make the repo root (durable_streams, tests.server, benchmarks) importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from benchmarks import (
    _consumer,
    _fanout,
    _inprocess,
    _live,
    _producer,
    _reads,
    _requests,
    _state,
    _sync,
)
from benchmarks._harness import (
    FULL,
    QUICK,
    Bench,
    Row,
    format_facts,
    format_table,
    machine_facts,
    raise_fd_limit,
    write_json,
)
from tests.server.harness import running_server

Scenario = Callable[[Bench], Awaitable[list[Row]]]

SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "append": ("1 append latency", _requests.append_latency),
    "create-head": ("2 create and head latency", _requests.create_head_latency),
    "catchup": ("3 catch-up read of a JSON stream", _reads.catchup_json),
    "producer": ("4 producer throughput", _producer.producer_throughput),
    "tail": ("5 live tail latency", _live.tail_latency),
    "memory": ("6 large catch-ups: throughput and memory", _reads.read_memory),
    "fanout": ("7 fan-out to concurrent live readers", _fanout.fanout),
    "consumer": ("8 consumer with SQLite checkpoints", _consumer.consumer_throughput),
    "state": ("9 State Protocol materializing", _state.state_materialize),
    "sync": ("10 sync API overhead: append latency, producer throughput", _sync.sync_overhead),
    "inprocess": (
        "11 in-process test server vs the reference server",
        _inprocess.inprocess_vs_reference,
    ),
}

#: Long enough that no live read in the tail and fan-out scenarios times out mid-sample.
LONG_POLL_TIMEOUT_MS = 20_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (< 1 minute)")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="anyio backend"
    )
    return parser.parse_args(argv)


async def run_scenarios(bench: Bench, names: list[str]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failures: list[str] = []
    for name in names:
        title, scenario = SCENARIOS[name]
        print(f"bench: {title} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            found = await scenario(bench)
        except Exception as error:  # a benchmark failure is reported, the others still run
            traceback.print_exc()
            rows.append(Row(title, "-", "", None, None, note=f"FAILED: {error!r}"[:200]))
            failures.append(f"{name}: {error!r}")
            continue
        rows += found
        print(
            f"bench: {title} done in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows, failures


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    names = args.only or list(SCENARIOS)
    sizes = QUICK if args.quick else FULL
    soft, _ = raise_fd_limit()
    facts = machine_facts(args.backend)
    facts["open file limit"] = str(soft)
    started = time.perf_counter()
    with running_server(long_poll_timeout_ms=LONG_POLL_TIMEOUT_MS) as server:
        bench = Bench(server=server, sizes=sizes, quick=args.quick)
        rows, failures = anyio.run(run_scenarios, bench, names, backend=args.backend)
    elapsed = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    print(f"\n## Results ({mode} run, {elapsed:.0f} s)\n")
    print(format_table(rows))
    print("\n## Machine\n")
    print(format_facts(facts))
    if args.json is not None:
        meta = {"mode": mode, "seconds": round(elapsed, 1), "scenarios": names}
        write_json(args.json, facts, rows, meta)
        print(f"\nwrote {args.json}", file=sys.stderr)
    if failures:
        print("\nbench: not every scenario ran:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
