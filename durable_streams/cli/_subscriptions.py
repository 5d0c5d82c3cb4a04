"""The ``subscription`` commands: manage §7 subscriptions (imported only when one runs)."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import click

from durable_streams.subscriptions import Subscription, SubscriptionClient, SubscriptionConfig

from ._conventions import Settings
from ._output import is_tty

__all__ = ["create", "delete", "get", "link", "unlink"]


def _client(settings: Settings) -> SubscriptionClient:
    if not settings.url:
        raise click.UsageError(
            "subscriptions live under the stream root: pass --url (or set DURABLE_STREAMS_URL), "
            "e.g. http://127.0.0.1:4437/v1/stream"
        )
    from ._commands import retry_policy

    return SubscriptionClient(
        settings.url,
        headers=settings.header_map(),
        timeout=settings.timeout,
        retry=retry_policy(settings),
    )


def _show(subscription: Subscription, *, verb: str | None = None) -> None:
    """A summary on a terminal; the subscription as one JSON line otherwise."""
    if not is_tty(sys.stdout):
        click.echo(json.dumps(subscription.model_dump(mode="json")))
        return
    if verb:
        click.echo(f"{verb}: {subscription.id}")
    rows: list[tuple[str, Any]] = [
        ("type", subscription.type),
        ("status", subscription.status),
        ("pattern", subscription.pattern),
        ("wake stream", subscription.wake_stream),
        ("webhook", subscription.webhook.url if subscription.webhook else None),
        ("lease ttl ms", subscription.lease_ttl_ms),
        ("created at", subscription.created_at),
        ("description", subscription.description),
    ]
    for name, value in rows:
        if value is not None:
            click.echo(f"  {name + ':':<14}{value}")
    if subscription.webhook is not None and subscription.webhook.signing is not None:
        signing = subscription.webhook.signing
        click.echo(f"  {'signing:':<14}{signing.alg} kid={signing.kid} {signing.jwks_url}")
    click.echo(f"  streams ({len(subscription.streams)}):")
    for stream in subscription.streams:
        click.echo(f"    {stream.path}  acked {stream.acked_offset}  ({stream.link_type})")


def create(
    settings: Settings,
    subscription_id: str,
    *,
    kind: str,
    pattern: str | None,
    streams: tuple[str, ...],
    wake_stream: str | None,
    webhook_url: str | None,
    lease_ttl_ms: int | None,
    description: str | None,
) -> None:
    from durable_streams.subscriptions import WebhookConfig

    config = SubscriptionConfig(
        type=kind,  # click.Choice checked it
        pattern=pattern,
        streams=streams,
        wake_stream=wake_stream,
        webhook=WebhookConfig(url=webhook_url) if webhook_url else None,
        lease_ttl_ms=lease_ttl_ms,
        description=description,
    )

    async def work() -> None:
        async with _client(settings) as subs:
            result = await subs.create(subscription_id, config)
        _show(
            result.subscription,
            verb="created" if result.created else "exists (same configuration)",
        )

    anyio.run(work)


def get(settings: Settings, subscription_id: str) -> None:
    async def work() -> None:
        async with _client(settings) as subs:
            _show(await subs.get(subscription_id))

    anyio.run(work)


def delete(settings: Settings, subscription_id: str) -> None:
    async def work() -> None:
        async with _client(settings) as subs:
            await subs.delete(subscription_id)
        if is_tty(sys.stderr):
            click.echo(f"deleted subscription {subscription_id}", err=True)

    anyio.run(work)


def link(settings: Settings, subscription_id: str, streams: tuple[str, ...]) -> None:
    async def work() -> None:
        async with _client(settings) as subs:
            await subs.link(subscription_id, list(streams))

    anyio.run(work)


def unlink(settings: Settings, subscription_id: str, stream: str) -> None:
    async def work() -> None:
        async with _client(settings) as subs:
            await subs.unlink(subscription_id, stream)

    anyio.run(work)
