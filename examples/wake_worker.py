"""A pull-wake worker service: index every chat message, with as many workers as you run.

One pull-wake subscription covers every stream matching ``--pattern`` (``chats/*``);
the server wakes the workers through ``--wake-stream`` when a chat has new messages,
one worker claims the wake, indexes the new messages and acks them. Run it twice (or
ten times): the server leases each wake to one worker, and a worker killed mid-wake
loses nothing (its lease expires, another worker goes on from the last ack)::

    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/wake_worker.py
    python examples/wake_worker.py --subscription chat-indexer --pattern 'chats/*'

Then write to a chat, e.g. with the CLI::

    export DURABLE_STREAMS_URL=http://127.0.0.1:4437/v1/stream
    durable-streams create chats/42 -t application/json
    durable-streams append chats/42 '{"user": "ada", "text": "hello there"}'

``DURABLE_STREAMS_URL`` is the server (``/v1/stream`` is added unless it ends with
it); ``--root`` gives the stream root URL instead. The service creates the wake
stream and the subscription if they do not exist, and runs until Ctrl-C (or
SIGTERM), releasing the wake it holds.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections import Counter
from collections.abc import Callable

import anyio
import pydantic

from durable_streams.subscriptions import (
    SubscriptionClient,
    SubscriptionConfig,
    WakeContext,
    WakeWorker,
)


class ChatMessage(pydantic.BaseModel):
    user: str
    text: str


class WordIndex:
    """What the service builds: word counts per chat (a search index, in a real service)."""

    def __init__(self) -> None:
        self.words: dict[str, Counter[str]] = {}
        self.messages = 0

    def add(self, chat: str, message: ChatMessage) -> None:
        self.words.setdefault(chat, Counter()).update(message.text.lower().split())
        self.messages += 1


async def ensure_subscription(
    subs: SubscriptionClient,
    subscription_id: str,
    pattern: str,
    wake_stream: str,
    lease_ttl_ms: int,
) -> None:
    """Create the wake stream and the subscription, or confirm they exist (idempotent)."""
    await subs.handle(wake_stream, content_type="application/json").create()
    config = SubscriptionConfig(
        type="pull-wake", pattern=pattern, wake_stream=wake_stream, lease_ttl_ms=lease_ttl_ms
    )
    result = await subs.create(subscription_id, config)
    print(f"subscription {subscription_id}: {'created' if result.created else 'exists'}")


async def run_service(
    root: str,
    *,
    subscription_id: str,
    pattern: str,
    wake_stream: str,
    lease_ttl_ms: int,
    stop: anyio.Event,
    index: WordIndex,
    on_ready: Callable[[], None] = lambda: None,
    on_indexed: Callable[[], None] = lambda: None,
) -> None:
    """Index messages until ``stop`` is set; ``on_ready`` runs once the worker waits for
    wakes, ``on_indexed`` after each message."""

    async def index_message(message: ChatMessage, context: WakeContext) -> None:
        index.add(context.stream, message)
        print(f"indexed {context.stream} (wake {context.generation}): {message.text!r}")
        on_indexed()

    async with SubscriptionClient(root) as subs:
        await ensure_subscription(subs, subscription_id, pattern, wake_stream, lease_ttl_ms)
        async with WakeWorker(
            subs, [subscription_id], index_message, model=ChatMessage, max_concurrent_wakes=4
        ) as worker:
            print(f"worker {worker.worker} is waiting for wakes on {wake_stream}")
            on_ready()
            await stop.wait()
    print(f"stopped after indexing {index.messages} messages")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscription", default="chat-indexer")
    parser.add_argument("--pattern", default="chats/*")
    parser.add_argument("--wake-stream", default="wakes/chat-indexer")
    parser.add_argument("--lease-ttl-ms", type=int, default=10_000)
    parser.add_argument("--root", help="the stream root URL (default: from DURABLE_STREAMS_URL)")
    args = parser.parse_args()
    root = args.root or os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
    if not root.endswith("/v1/stream"):
        root += "/v1/stream"
    stop = anyio.Event()

    async def stop_on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signal)
        await run_service(
            root,
            subscription_id=args.subscription,
            pattern=args.pattern,
            wake_stream=args.wake_stream,
            lease_ttl_ms=args.lease_ttl_ms,
            stop=stop,
            index=WordIndex(),
        )
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
