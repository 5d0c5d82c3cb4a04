"""Subscriptions (§7) against the reference server: management round trips, wake leases,
and every error code the server can produce.

``TOKEN_EXPIRED`` cannot be produced for real (the reference server's wake tokens
live an hour); its mapping is covered by the unit tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable

import anyio
import pytest

from durable_streams import (
    AckOffsetError,
    AlreadyClaimedError,
    FencedError,
    InvalidArgumentError,
    InvalidSubscriptionRequestError,
    NoPendingWorkError,
    NotFoundError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    WakeTokenError,
    WebhookUrlRejectedError,
)
from durable_streams.subscriptions import (
    AckResult,
    Claim,
    StreamAck,
    SubscriptionClient,
    SubscriptionConfig,
    WakeEvent,
    WakeWorker,
    WebhookConfig,
)
from tests.conftest import ServerTarget

pytestmark = [pytest.mark.anyio, pytest.mark.subscriptions]


@pytest.fixture
async def subs(server: ServerTarget) -> AsyncIterator[SubscriptionClient]:
    async with SubscriptionClient(f"{server.url}/v1/stream") as client:
        yield client


@pytest.fixture
def prefix() -> str:
    return f"subs-{uuid.uuid4().hex[:12]}"


async def json_stream(subs: SubscriptionClient, path: str) -> None:
    await subs.handle(path, content_type="application/json").create()


def pull_wake(prefix: str, **fields: object) -> SubscriptionConfig:
    return SubscriptionConfig(
        type="pull-wake", wake_stream=f"{prefix}/wakes", lease_ttl_ms=5000, **fields
    )


async def test_create_get_link_unlink_delete_round_trip(
    subs: SubscriptionClient, prefix: str
) -> None:
    await json_stream(subs, f"{prefix}/wakes")
    await json_stream(subs, f"{prefix}/a")
    await subs.handle(f"{prefix}/a").append({"before": "link"})  # existing data is not work
    config = pull_wake(prefix, streams=(subs.url_of(f"{prefix}/a"),), description="round trip")

    first = await subs.create(prefix, config)
    assert first.created
    assert first.subscription.id == prefix
    assert first.subscription.status == "active"
    assert first.subscription.lease_ttl_ms == 5000
    assert first.subscription.wake_stream == f"{prefix}/wakes"
    link = first.subscription.stream(f"{prefix}/a")
    assert link is not None
    assert link.link_type == "explicit"
    assert link.acked_offset == (await subs.handle(f"{prefix}/a").head()).next_offset

    again = await subs.create(prefix, config)
    assert not again.created
    with pytest.raises(SubscriptionExistsError):
        await subs.create(prefix, pull_wake(prefix, streams=(f"{prefix}/other",)))

    await subs.link(prefix, [f"{prefix}/b", subs.url_of(f"{prefix}/c")])
    got = await subs.get(prefix)
    assert sorted(s.path for s in got.streams) == sorted(f"{prefix}/{n}" for n in "abc")
    await subs.unlink(prefix, f"{prefix}/b")
    got = await subs.get(prefix)
    assert sorted(s.path for s in got.streams) == [f"{prefix}/a", f"{prefix}/c"]

    await subs.delete(prefix)
    with pytest.raises(SubscriptionNotFoundError):
        await subs.get(prefix)
    with pytest.raises(SubscriptionNotFoundError):
        await subs.claim(prefix, worker="w")
    with pytest.raises(SubscriptionNotFoundError):
        await subs.link(prefix, [f"{prefix}/a"])


async def test_pattern_links_new_streams_from_their_start(
    subs: SubscriptionClient, prefix: str
) -> None:
    await json_stream(subs, f"{prefix}/wakes")
    await subs.create(prefix, pull_wake(prefix, pattern=f"{prefix}/chats/*"))
    chat = subs.handle(f"{prefix}/chats/1", content_type="application/json")
    await chat.create()
    await chat.append({"n": 1})
    got = await subs.get(prefix)
    link = got.stream(f"{prefix}/chats/1")
    assert link is not None
    assert (link.link_type, link.acked_offset) == ("glob", "-1")


async def test_claim_ack_release_and_fencing(subs: SubscriptionClient, prefix: str) -> None:
    await json_stream(subs, f"{prefix}/wakes")
    await json_stream(subs, f"{prefix}/a")
    await subs.create(prefix, pull_wake(prefix, streams=(f"{prefix}/a",)))
    with pytest.raises(NoPendingWorkError):
        await subs.claim(prefix, worker="w1")

    appended = await subs.handle(f"{prefix}/a").append({"n": 1})
    async with subs.handle(f"{prefix}/wakes").stream(live=False) as read:
        wakes = [WakeEvent.model_validate(event) async for event in read.iter_json()]
    assert [(w.type, w.subscription_id, w.stream) for w in wakes] == [
        ("wake", prefix, f"{prefix}/a")
    ]

    first = await subs.claim(prefix, worker="w1")
    assert first.generation == wakes[0].generation  # the claim takes the announced wake
    assert [s.path for s in first.pending_streams] == [f"{prefix}/a"]
    assert first.pending_streams[0].tail_offset == appended.next_offset
    with pytest.raises(AlreadyClaimedError) as claimed:
        await subs.claim(prefix, worker="w2")
    assert claimed.value.current_holder == "w1"
    assert claimed.value.generation == first.generation

    # A heartbeat with progress, then the errors an ack can meet.
    unmoved = StreamAck(stream=f"{prefix}/a", offset=first.pending_streams[0].acked_offset)
    beat = await subs.heartbeat(first, [unmoved])
    assert beat.ok
    assert not beat.next_wake
    forged = Claim.model_validate(
        {**first.model_dump(), "token": first.token.get_secret_value() + "x"}
    )
    with pytest.raises(WakeTokenError):
        await subs.ack(forged)
    with pytest.raises(AckOffsetError):
        await subs.ack(first, [StreamAck(stream=f"{prefix}/a", offset="-1")])
    with pytest.raises(AckOffsetError):
        await subs.ack(
            first, [StreamAck(stream=f"{prefix}/not-linked", offset=str(appended.next_offset))]
        )
    with pytest.raises(AckOffsetError):
        await subs.ack(first, [StreamAck(stream=f"{prefix}/a", offset="9" * 16 + "_" + "9" * 16)])

    # Released: the wake is gone, its lease fenced; new data makes a new generation.
    await subs.release(first)
    with pytest.raises(FencedError):
        await subs.heartbeat(first)
    with pytest.raises(FencedError):
        await subs.release(first)
    second = await subs.claim(prefix, worker="w2")
    assert second.generation > first.generation
    with pytest.raises(FencedError):
        await subs.ack(first, done=True)
    done = await subs.ack(
        second, [StreamAck(stream=f"{prefix}/a", offset=str(appended.next_offset))], done=True
    )
    assert done.ok
    assert not done.next_wake
    link = (await subs.get(prefix)).stream(f"{prefix}/a")
    assert link is not None
    assert link.acked_offset == appended.next_offset
    with pytest.raises(NoPendingWorkError):
        await subs.claim(prefix, worker="w1")

    # A done ack that leaves work behind issues the next wake at once.
    await subs.handle(f"{prefix}/a").append({"n": 2})
    third = await subs.claim(prefix, worker="w1")
    await subs.handle(f"{prefix}/a").append({"n": 3})
    partial = await subs.ack(third, [], done=True)
    assert partial.next_wake
    assert (await subs.claim(prefix, worker="w1")).generation > third.generation

    await subs.delete(prefix)
    with pytest.raises(SubscriptionNotFoundError):
        await subs.ack(second, done=True)


async def test_invalid_requests(subs: SubscriptionClient, prefix: str) -> None:
    with pytest.raises(InvalidSubscriptionRequestError):
        await subs.create(prefix, SubscriptionConfig(type="pull-wake", pattern="x/*"))
    with pytest.raises(InvalidSubscriptionRequestError):
        await subs.create(prefix, SubscriptionConfig(type="pull-wake", wake_stream="w"))
    with pytest.raises(WebhookUrlRejectedError):
        await subs.create(
            prefix,
            SubscriptionConfig(
                type="webhook", pattern="x/*", webhook=WebhookConfig(url="https://10.1.2.3/hook")
            ),
        )
    hooked = SubscriptionConfig(
        type="webhook", pattern=f"{prefix}/*", webhook=WebhookConfig(url="http://127.0.0.1:9/h")
    )
    await subs.create(prefix, hooked)
    with pytest.raises(InvalidSubscriptionRequestError):
        await subs.claim(prefix, worker="w1")  # a webhook subscription has no claims
    await subs.delete(prefix)


async def test_a_worker_refuses_missing_and_webhook_subscriptions(
    subs: SubscriptionClient, prefix: str
) -> None:
    def handler(item: object, context: object) -> None:
        raise AssertionError("nothing to handle")

    with pytest.raises(SubscriptionNotFoundError):
        async with WakeWorker(subs, [f"{prefix}-missing"], handler):
            pass
    hooked = SubscriptionConfig(
        type="webhook", pattern=f"{prefix}/*", webhook=WebhookConfig(url="http://127.0.0.1:9/h")
    )
    await subs.create(prefix, hooked)
    with pytest.raises(InvalidArgumentError, match="not a pull-wake subscription"):
        await WakeWorker(subs, [prefix], handler).run()
    await subs.delete(prefix)


class CountingClient(SubscriptionClient):
    """Counts claims; tells when a done ack was answered."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.claims = 0
        self.done_acks: list[list[StreamAck]] = []
        self.done = anyio.Event()

    async def claim(self, subscription_id: str, *, worker: str) -> Claim:
        self.claims += 1
        return await super().claim(subscription_id, worker=worker)

    async def ack(
        self, claim: Claim, acks: Iterable[StreamAck] = (), *, done: bool = False
    ) -> AckResult:
        acks = list(acks)
        result = await super().ack(claim, acks, done=done)
        if done:
            self.done_acks.append(acks)
            self.done.set()
        return result


async def test_an_expired_stream_is_acked_to_its_tail_not_claimed_in_a_loop(
    server: ServerTarget, prefix: str
) -> None:
    # The reference server does not unlink an expired stream: it stays pending for
    # ever unless acked. The worker must ack it (its data is gone), not spin on it.
    subs = CountingClient(f"{server.url}/v1/stream")
    async with subs:
        await json_stream(subs, f"{prefix}/wakes")
        await subs.create(prefix, pull_wake(prefix, pattern=f"{prefix}/chats/*"))
        chat = subs.handle(f"{prefix}/chats/1", content_type="application/json")
        await chat.create(ttl=1)
        await chat.append({"n": 1})
        with anyio.fail_after(5):
            while True:  # the TTL must pass: real time, polled
                try:
                    await chat.head()
                except NotFoundError:
                    break
                await anyio.sleep(0.1)
        handled: list[object] = []
        with anyio.fail_after(10):
            async with WakeWorker(
                subs, [prefix], lambda item, context: handled.append(item), poll_interval=None
            ):
                await subs.done.wait()
        [acks] = subs.done_acks
        assert [ack.stream for ack in acks] == [f"{prefix}/chats/1"]
        assert subs.claims == 1
        assert handled == []
        with pytest.raises(NoPendingWorkError):  # nothing left to wake anyone for
            await subs.claim(prefix, worker="probe")
        await subs.delete(prefix)
