"""Scenario 8: a Consumer with SQLite checkpoints against a plain ``iter_json()`` read.

The same JSON stream of ~100 B messages is read from the start to the tail by
a :class:`~durable_streams.Consumer` that saves its position to a
:class:`~durable_streams.SQLiteCheckpoints` store every 1,000 items (a new
consumer name per round, so each round reads everything), and by a plain
``handle.stream(...).iter_json()`` loop. The "raw" column here is the plain SDK
read: the ratio is what the consumer's bookkeeping and saves cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from durable_streams import CommitEvery, Consumer, SQLiteCheckpoints, StreamHandle

from ._harness import JSON_TYPE, Bench, Row, interleaved, median, raw_client
from ._reads import batches, fill_stream, make_messages

COMMIT_ITEMS = 1000


async def consumer_throughput(bench: Bench) -> list[Row]:
    """8. Consumer (SQLite, commit every 1,000 items) vs plain iter_json()."""
    sizes = bench.sizes
    count = sizes.catchup_messages
    url = bench.new_url("consumer")
    rounds = max(3, sizes.catchup_rounds)
    with tempfile.TemporaryDirectory() as directory:
        store = SQLiteCheckpoints(Path(directory) / "checkpoints.db")
        async with raw_client() as client, StreamHandle(url) as handle:
            await fill_stream(client, url, JSON_TYPE, batches(make_messages(count)))
            names = iter(range(1_000_000))

            async def consumer_read() -> float:
                seen = 0
                policy = CommitEvery(items=COMMIT_ITEMS, seconds=None)
                start = time.perf_counter()
                async with Consumer(
                    handle, name=f"bench-{next(names)}", checkpoints=store, commit_every=policy
                ) as consumer:
                    async for _item in consumer.iter_json():
                        seen += 1
                elapsed = time.perf_counter() - start
                if seen != count:
                    raise RuntimeError(f"consumer read {seen} items, expected {count}")
                return elapsed

            async def plain_read() -> float:
                seen = 0
                start = time.perf_counter()
                async with handle.stream(offset="-1", live=False) as response:
                    async for _item in response.iter_json():
                        seen += 1
                elapsed = time.perf_counter() - start
                if seen != count:
                    raise RuntimeError(f"plain read {seen} items, expected {count}")
                return elapsed

            await consumer_read()  # warm-up
            await plain_read()
            consumer_times, plain_times = await interleaved(rounds, consumer_read, plain_read)
            await client.delete(url)
        store.close()
    consumer_s, plain_s = median(consumer_times), median(plain_times)
    row = Row(
        f"8 consumer, SQLite every {COMMIT_ITEMS:,} ({count:,} x 100 B)",
        "messages/s",
        "msg/s",
        count / consumer_s,
        count / plain_s,
        target=">= 0.8x plain iter_json()",
        note="raw column = plain SDK iter_json() of the same stream",
    )
    ratio = row.ratio
    row.met = ratio is not None and ratio >= 0.8
    return [row]
