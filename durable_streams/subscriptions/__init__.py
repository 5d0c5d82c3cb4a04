"""Subscriptions (§7 of the protocol): react to many streams with a pool of workers.

The server tracks, per subscription, the offset acknowledged on each linked stream
and wakes a worker when a stream has new data: by an event on a *wake stream*
that workers claim under a lease (pull-wake), or by a signed webhook.

- :class:`WakeWorker`: one worker of a pool serving pull-wake subscriptions: it
  claims wakes, hands the new items of each woken stream to your handler,
  heartbeats the lease, acks what was handled and releases on failure.
- :class:`SubscriptionClient`: create/get/delete subscriptions, link and unlink
  streams, claim wakes, ack (heartbeats included), release, and ack a webhook
  wake through its callback URL.
- The records: :class:`SubscriptionConfig`, :class:`Subscription`,
  :class:`Claim`, :class:`StreamAck`, :class:`AckResult`, :class:`WakeEvent`...

Errors are the core's (``durable_streams.SubscriptionNotFoundError``,
``AlreadyClaimedError``, ``FencedError``, ``NoPendingWorkError``...).

Example::

    from durable_streams.subscriptions import SubscriptionClient, SubscriptionConfig

    async with SubscriptionClient("http://127.0.0.1:4437/v1/stream") as subs:
        await subs.create(
            "indexer", SubscriptionConfig(type="pull-wake", pattern="chats/*", wake_stream="wakes")
        )
"""

from ._asgi import WakeReply, WebhookHandler, WebhookReceiver
from ._client import SubscriptionClient
from ._jwks import JwksCache
from ._models import (
    AckResult,
    Claim,
    ClaimedStream,
    CreateSubscriptionResult,
    StreamAck,
    Subscription,
    SubscriptionConfig,
    SubscriptionStream,
    WakeEvent,
    WebhookConfig,
    WebhookInfo,
    WebhookSigning,
)
from ._webhook import WebhookNotification, verify
from ._worker import WakeContext, WakeHandler, WakeWorker

__all__ = [
    "AckResult",
    "Claim",
    "ClaimedStream",
    "CreateSubscriptionResult",
    "JwksCache",
    "StreamAck",
    "Subscription",
    "SubscriptionClient",
    "SubscriptionConfig",
    "SubscriptionStream",
    "WakeContext",
    "WakeEvent",
    "WakeHandler",
    "WakeReply",
    "WakeWorker",
    "WebhookConfig",
    "WebhookHandler",
    "WebhookInfo",
    "WebhookNotification",
    "WebhookReceiver",
    "WebhookSigning",
    "verify",
]
