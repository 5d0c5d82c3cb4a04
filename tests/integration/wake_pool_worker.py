"""One worker process of the wake pool test (``test_wake_pool.py``): run, maybe SIGKILLed.

    python -m tests.integration.wake_pool_worker ROOT SUBSCRIPTION_IDS NAME BACKEND STALL_FILE

``SUBSCRIPTION_IDS`` is comma-separated. The first worker (of all) to meet an item
with ``"stall": true`` creates ``STALL_FILE``, says ``stalled`` and hangs in its handler
(holding the lease, heartbeating): the test kills it there; the others handle the item.
Every line on stdout is a JSON record,
flushed at once (so what was written survives kill -9), with the wall-clock time
``t``: ``ready``; ``claim`` (sub, g) once a claim succeeded; ``item`` (sub, g, s: the
stream, n) when the handler handled an item; ``ack`` (sub, g, done) before an ack is
sent and ``acked`` (ok) after its answer; ``release`` before a release; ``stopped`` at
a clean exit (SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from typing import Any

import anyio

from durable_streams.subscriptions import (
    AckResult,
    Claim,
    StreamAck,
    SubscriptionClient,
    WakeContext,
    WakeWorker,
)

MAX_CONCURRENT_WAKES = 3
STALL_FILE = ""


def record(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"e": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


class RecordingClient(SubscriptionClient):
    """The SDK's client, recording claims, acks and releases as they happen."""

    async def claim(self, subscription_id: str, *, worker: str) -> Claim:
        claim = await super().claim(subscription_id, worker=worker)
        record("claim", sub=subscription_id, g=claim.generation)
        return claim

    async def ack(
        self, claim: Claim, acks: Iterable[StreamAck] = (), *, done: bool = False
    ) -> AckResult:
        sub, generation = claim.subscription_id, claim.generation
        record("ack", sub=sub, g=generation, done=done)
        try:
            result = await super().ack(claim, acks, done=done)
        except Exception:
            record("acked", sub=sub, g=generation, done=done, ok=False)
            raise
        record("acked", sub=sub, g=generation, done=done, ok=True)
        return result

    async def release(self, claim: Claim) -> None:
        record("release", sub=claim.subscription_id, g=claim.generation)
        await super().release(claim)


async def handle(item: dict[str, Any], context: WakeContext) -> None:
    if item.get("stall") and first_to_stall():
        record("stalled", sub=context.subscription_id, g=context.generation, s=context.stream)
        await anyio.sleep_forever()
    record("item", sub=context.subscription_id, g=context.generation, s=context.stream, n=item["n"])
    await anyio.sleep(0.002)  # a little work: wakes stay open across the kill moment


def first_to_stall() -> bool:
    try:
        os.close(os.open(STALL_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


async def main(root: str, ids: list[str], name: str) -> None:
    async with RecordingClient(root) as subs:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with WakeWorker(
                subs, ids, handle, worker=name, max_concurrent_wakes=MAX_CONCURRENT_WAKES
            ):
                record("ready")
                async for _ in signals:
                    break
    record("stopped")


if __name__ == "__main__":
    root, ids, name, backend, STALL_FILE = sys.argv[1:6]
    anyio.run(main, root, ids.split(","), name, backend=backend)
