"""A FastAPI service that processes new orders when the server calls its webhook.

The server watches every stream matching ``orders/*`` (a webhook subscription,
§7) and POSTs a signed wake to ``/webhooks/orders`` when one has new data. The
receiver verifies the signature (the server's JWKS, fetched and cached), then
``on_wake`` reads each pending stream from its acknowledged offset and acks
exactly what it read through the wake's callback URL::

    pip install 'aio-durable-streams[webhooks]' fastapi uvicorn
    export DURABLE_STREAMS_URL=http://127.0.0.1:4437
    uvicorn examples.webhook_receiver:app --port 8000
    python examples/webhook_receiver.py http://127.0.0.1:8000/webhooks/orders  # subscribe

Then append to ``orders/eu`` (for example) and watch the service print the orders.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.routing import Route

from durable_streams.subscriptions import (
    JwksCache,
    StreamAck,
    SubscriptionClient,
    SubscriptionConfig,
    WakeReply,
    WebhookConfig,
    WebhookNotification,
    WebhookReceiver,
)

SERVER = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
ROOT = f"{SERVER}/v1/stream"  # the stream root of the reference server
SUBSCRIPTION_ID = os.environ.get("SUBSCRIPTION_ID", "orders-webhook")

subs = SubscriptionClient(ROOT)
keys = JwksCache(f"{ROOT}/__ds/jwks.json")


def process(stream: str, order: Any) -> None:
    """Your business logic: here, print the order."""
    print(f"{stream}: {order}", flush=True)


async def on_wake(wake: WebhookNotification) -> WakeReply:
    """Read each pending stream from where the last wake stopped; ack what was read."""
    acks = []
    for stream in wake.pending_streams:
        async with subs.handle(stream.path).stream(offset=stream.acked_offset) as response:
            async for order in response.iter_json():
                process(stream.path, order)
        acks.append(StreamAck(stream=stream.path, offset=response.offset))
    await wake.ack(subs, acks)  # done=True: the next wake starts after what was read
    return WakeReply.CALLBACK  # already acked: the receiver acks nothing more


# DONE (or None) would make the receiver ack the wake's tail_offsets itself; this
# handler acks exactly what it read instead (possibly past those tails).
receiver = WebhookReceiver(on_wake, subscriptions=subs, subscription_id=SUBSCRIPTION_ID, keys=keys)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await subs.aclose()


app = FastAPI(lifespan=lifespan)
# The receiver is a plain ASGI app: a Starlette route serves it at this exact path.
app.router.routes.append(Route("/webhooks/orders", receiver, methods=["POST"]))


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


async def subscribe(webhook_url: str) -> None:
    """Create the subscription (idempotent: the same configuration is a no-op)."""
    config = SubscriptionConfig(
        type="webhook", pattern="orders/*", webhook=WebhookConfig(url=webhook_url)
    )
    async with SubscriptionClient(ROOT) as client:
        result = await client.create(SUBSCRIPTION_ID, config)
    print(f"subscription {SUBSCRIPTION_ID} {'created' if result.created else 'exists'}")


if __name__ == "__main__":
    anyio.run(
        subscribe, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/webhooks/orders"
    )
