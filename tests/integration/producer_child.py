"""A producer process for the restart tests (run as a script, not collected by pytest).

    python producer_child.py URL RUN COUNT BACKEND [--auto-claim] [--epoch N]

Appends ``{"run": RUN, "n": n}`` for n in 0..COUNT-1 to the JSON stream at
URL (created if missing) with producer id ``restart-test``, flushing every
``FLUSH_EVERY`` events and printing ``acked <n>`` once the first n events are
acknowledged, so a parent can wait for progress and kill the process mid-run.
Ends with ``done <stats>`` (exit 0), or ``failed <first_index> <item_count>
<error type>`` lines and exit 3 if batches failed.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from durable_streams import IdempotentProducer, ProducerFlushError, StreamHandle

PRODUCER_ID = "restart-test"
FLUSH_EVERY = 50


async def produce(args: argparse.Namespace) -> int:
    async with StreamHandle(args.url) as handle:
        await handle.create(content_type="application/json")
        producer = IdempotentProducer(
            handle,
            PRODUCER_ID,
            epoch="auto" if args.epoch is None else int(args.epoch),
            auto_claim=args.auto_claim,
            max_batch_items=10,
        )
        try:
            async with producer:
                for n in range(args.count):
                    await producer.wait_for_capacity()
                    producer.append({"run": args.run, "n": n})
                    if (n + 1) % FLUSH_EVERY == 0:
                        await producer.flush()
                        print(f"acked {n + 1}", flush=True)
        except ProducerFlushError as exc:
            for failure in exc.failures:
                print(
                    f"failed {failure.first_index} {failure.item_count} "
                    f"{type(failure.error).__name__}",
                    flush=True,
                )
            return 3
        stats = producer.stats
        print(
            f"done stored={stats.stored_messages} duplicate={stats.duplicate_messages} "
            f"failed={stats.failed_messages} epoch={producer.epoch}",
            flush=True,
        )
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("run", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("backend", choices=["asyncio", "trio"])
    parser.add_argument("--auto-claim", action="store_true")
    parser.add_argument("--epoch", default=None)
    args = parser.parse_args()
    sys.exit(anyio.run(produce, args, backend=args.backend))


if __name__ == "__main__":
    main()
