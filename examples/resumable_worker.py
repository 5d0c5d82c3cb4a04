"""A worker that bills orders from a stream and resumes exactly after any crash.

Each order's effect (a row in ``bills``) and the consumer's position are
written in ONE SQLite transaction, so however the worker dies (kill -9
included) a restart neither bills an order twice nor skips one. Run it, kill
it, run it again::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/resumable_worker.py
    python examples/resumable_worker.py --orders 500 --db /tmp/billing.db

It creates the stream with ``--orders`` orders if it does not exist yet, then
follows it (``live="auto"``) until Ctrl-C, or stops once caught up with ``--once``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path

import anyio
import anyio.to_thread
import pydantic

from durable_streams import Consumer, Position, SQLiteCheckpoints, StreamHandle


class Order(pydantic.BaseModel):
    id: int
    cents: int


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("CREATE TABLE IF NOT EXISTS bills (order_id INTEGER PRIMARY KEY, cents INTEGER)")
    db.commit()
    return db


async def run_worker(url: str, db_path: Path, *, live: bool) -> int:
    """Bill every order not billed yet; returns how many this run billed."""
    store = SQLiteCheckpoints(db_path)
    db = open_db(db_path)
    billed = 0
    try:
        async with (
            StreamHandle(url) as handle,
            # commit_every=None: the consumer never saves by itself, the transaction does.
            Consumer(
                handle,
                name="billing",
                checkpoints=store,
                live="auto" if live else False,
                commit_every=None,
            ) as consumer,
        ):
            print(f"resuming at {consumer.position}")

            def bill(order: Order, position: Position) -> None:
                with db:  # one transaction: the effect and where to resume after it
                    db.execute("INSERT INTO bills VALUES (?, ?)", (order.id, order.cents))
                    store.save_in(db, consumer.key, position)

            async for order in consumer.iter_json(model=Order):
                await anyio.to_thread.run_sync(bill, order, consumer.position)
                billed += 1
                if billed % 100 == 0:
                    print(f"billed {billed} orders this run (last: #{order.id})")
    finally:
        db.close()
        store.close()
    print(f"done: billed {billed} orders this run")
    return billed


async def ensure_orders(url: str, count: int) -> None:
    async with StreamHandle(url) as handle:
        if not await handle.exists():
            await handle.create(content_type="application/json")
            await handle.append_many([{"id": n, "cents": 100 + n} for n in range(count)])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=1000, help="orders of a new stream")
    parser.add_argument("--db", type=Path, default=Path("billing.db"), help="SQLite file")
    parser.add_argument("--once", action="store_true", help="stop once caught up")
    args = parser.parse_args()
    base = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
    url = f"{base}/v1/stream/orders-example"
    await ensure_orders(url, args.orders)
    await run_worker(url, args.db, live=not args.once)


if __name__ == "__main__":
    anyio.run(main)
