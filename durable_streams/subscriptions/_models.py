"""Records of subscriptions (§7): configurations, what the server reports, claims, acks.

Server responses are validated with these models by the client; unknown extra fields
are ignored (a newer server may add some), missing or mistyped ones are a
:class:`~durable_streams.ParseError`.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from durable_streams._errors import invalid_options

__all__ = [
    "AckResult",
    "Claim",
    "ClaimedStream",
    "CreateSubscriptionResult",
    "StreamAck",
    "Subscription",
    "SubscriptionConfig",
    "SubscriptionStream",
    "WakeEvent",
    "WebhookConfig",
    "WebhookInfo",
    "WebhookSigning",
]

SubscriptionType = Literal["webhook", "pull-wake"]


class _Sent(BaseModel):
    """What the SDK sends: unknown or invalid fields are the caller's mistake
    (:class:`~durable_streams.InvalidArgumentError`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise invalid_options(type(self).__name__, exc) from None


class _Received(BaseModel):
    """What the server sends: unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class WebhookConfig(_Sent):
    """Where a webhook subscription delivers wakes (https, or http to localhost/127.0.0.x)."""

    url: str


class SubscriptionConfig(_Sent):
    """The configuration ``PUT`` to create a subscription (§7).

    ``streams`` are stream paths relative to the stream root (``"chats/42"``), or full
    stream URLs under the client's root (the client maps them). ``pattern`` is a glob
    (``*`` one segment, ``**`` any number). A pull-wake subscription needs
    ``wake_stream``, a webhook subscription ``webhook``. ``lease_ttl_ms``: how long a
    claim holds without a heartbeat (the server allows 1000 to 600000, default 30000).

    Example::

        config = SubscriptionConfig(
            type="pull-wake", pattern="chats/*", wake_stream="wakes/chats", lease_ttl_ms=10_000
        )
    """

    type: SubscriptionType
    pattern: str | None = None
    streams: tuple[str, ...] = ()
    webhook: WebhookConfig | None = None
    wake_stream: str | None = None
    lease_ttl_ms: int | None = Field(default=None, ge=1000, le=600_000)
    description: str | None = None

    def body(self) -> dict[str, object]:
        """The JSON document sent to the server (unset fields left out)."""
        document = self.model_dump(mode="json", exclude_none=True)
        if not self.streams:
            document.pop("streams", None)
        else:
            document["streams"] = list(self.streams)
        return document


class SubscriptionStream(_Received):
    """A stream linked to a subscription: its root-relative ``path``, how it was linked
    (``"explicit"`` or ``"glob"``) and the offset acknowledged so far (work is pending
    while the stream's tail is past it)."""

    path: str
    link_type: str
    acked_offset: str


class WebhookSigning(_Received):
    """How the server signs webhook deliveries: algorithm, key id and the JWKS URL."""

    alg: str
    kid: str
    jwks_url: str


class WebhookInfo(_Received):
    """A webhook subscription's target and signing metadata, as the server reports them."""

    url: str
    signing: WebhookSigning | None = None


class Subscription(_Received):
    """A subscription as ``GET`` (or create) returns it.

    Example::

        sub = await client.get("chat-indexer")
        for link in sub.streams:
            print(link.path, link.acked_offset)
    """

    id: str
    type: SubscriptionType
    pattern: str | None = None
    streams: tuple[SubscriptionStream, ...] = ()
    webhook: WebhookInfo | None = None
    wake_stream: str | None = None
    lease_ttl_ms: int
    created_at: str
    status: str
    description: str | None = None

    def stream(self, path: str) -> SubscriptionStream | None:
        """The link of ``path`` (root-relative), or None if it is not linked."""
        for link in self.streams:
            if link.path == path:
                return link
        return None


class CreateSubscriptionResult(_Received):
    """Outcome of ``create``: ``created`` is true for a new subscription (201), false
    when an identical one already existed (200)."""

    created: bool
    subscription: Subscription


class ClaimedStream(_Received):
    """A stream of a claimed wake: read it from ``acked_offset`` if ``has_pending``."""

    path: str
    link_type: str
    acked_offset: str
    tail_offset: str
    has_pending: bool


class Claim(_Received):
    """A claimed wake of a pull-wake subscription: the lease a worker holds.

    ``token`` authorizes acks and the release of this wake only (a ``SecretStr``:
    never shown in reprs or logs). A newer wake (``generation``) fences this one.

    Example::

        claim = await client.claim("chat-indexer", worker="worker-1")
        for stream in claim.pending_streams:
            ...
    """

    subscription_id: str
    wake_id: str
    generation: int
    token: SecretStr
    streams: tuple[ClaimedStream, ...] = ()
    lease_ttl_ms: int = Field(ge=1)

    @property
    def pending_streams(self) -> tuple[ClaimedStream, ...]:
        """The streams with data past their acknowledged offset."""
        return tuple(stream for stream in self.streams if stream.has_pending)


class WakeEvent(_Received):
    """An event the server appends to a pull-wake subscription's wake stream."""

    type: str
    subscription_id: str
    stream: str | None = None
    generation: int | None = None
    ts: int | None = None


class StreamAck(_Sent):
    """Acknowledge ``stream`` (root-relative path) up to ``offset``: the
    ``Stream-Next-Offset`` reached (acks are inclusive: the next reader starts there).

    Example::

        StreamAck(stream="chats/42", offset=response.offset)
    """

    stream: str
    offset: str


class AckResult(_Received):
    """The server's answer to an ack: ``next_wake`` is true when a done ack left
    pending work and a new wake was issued."""

    ok: bool
    next_wake: bool = False
