"""A small service that fires events through an IdempotentProducer.

Every event is appended without waiting; the producer batches them, retries
failed requests with the same producer tuple (so nothing is written twice) and
reports batches that fail for good to ``on_error``. Ctrl-C (or SIGTERM) stops
the loop, and leaving the ``async with`` block flushes what is still pending,
so every event the service produced is stored before it exits. A second Ctrl-C
quits at once.

Safe to restart: each run starts in a new epoch taken from the clock (the
default ``epoch="auto"``), so a restarted service's events are stored, never
mistaken for the previous run's. Run it twice against one stream
(``--url``) and both runs' events are there.

Run it against a local reference server (``node tests/server/launch.mjs``) or
your own::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/event_producer.py
    python examples/event_producer.py --events 1000   # stop by itself
    python examples/event_producer.py --url http://127.0.0.1:4437/v1/stream/events
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid

import anyio

from durable_streams import BatchFailure, DurableStreamError, IdempotentProducer, StreamHandle

#: Pause between events: a stand-in for the service's real work.
TICK_SECONDS = 0.001


def log_failure(error: DurableStreamError, failure: BatchFailure) -> None:
    where = f"epoch={failure.epoch} seq={failure.seq}"
    print(f"batch {where} ({failure.item_count} events) failed: {error}")


async def run_service(url: str, *, stop: anyio.Event, max_events: int | None = None) -> int:
    """Produce events until ``stop`` is set (or ``max_events`` are sent); returns the count."""
    async with StreamHandle(url) as handle:
        await handle.create(content_type="application/json")
        # The producer id names this service: one live writer per id. Each run takes a
        # fresh epoch from the clock (epoch="auto", the default), so a restart is stored
        # in full; auto_claim=True lets a new instance take over from one still running
        # (that one then fails with ProducerIdentityError instead of losing events).
        async with IdempotentProducer(
            handle, "event-service", auto_claim=True, on_error=log_failure
        ) as producer:
            sent = 0
            while not stop.is_set() and (max_events is None or sent < max_events):
                await producer.wait_for_capacity()  # backpressure instead of an error
                producer.append({"type": "tick", "n": sent, "at": time.time()})
                sent += 1
                if sent % 1000 == 0:
                    print(f"produced {sent}, acknowledged {producer.stats.acked_messages}")
                await anyio.sleep(TICK_SECONDS)
            print(f"stopping: flushing {producer.pending} pending event(s)")
        # Leaving the block flushed: everything produced is acknowledged here.
        acked = producer.stats.acked_messages
        print(f"done: {sent} events, {acked} acknowledged, epoch {producer.epoch}")
        return sent


async def stop_on_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("\nsignal received: finishing (Ctrl-C again quits at once)")
            stop.set()
            return


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=None, help="stop after this many events")
    parser.add_argument("--url", default=None, help="stream URL (default: a new stream)")
    args = parser.parse_args()
    base = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
    url = args.url or f"{base}/v1/stream/events-{uuid.uuid4().hex[:8]}"
    print(f"stream: {url}")
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stop_on_signals, stop)
        await run_service(url, stop=stop, max_events=args.events)
        tasks.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
