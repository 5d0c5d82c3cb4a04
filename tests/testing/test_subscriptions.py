"""Pull-wake subscriptions (§7) of ``durable_streams.testing``, driven by the SDK's own
SubscriptionClient and WakeWorker in-process: the reference server's routes, rules and
error codes (``tests/integration/test_subscriptions.py`` runs the same client against it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable

import anyio
import httpx
import pytest

from durable_streams import (
    AckOffsetError,
    AlreadyClaimedError,
    FencedError,
    InvalidSubscriptionRequestError,
    NoPendingWorkError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    WakeTokenError,
)
from durable_streams.subscriptions import (
    AckResult,
    Claim,
    StreamAck,
    SubscriptionClient,
    SubscriptionConfig,
    WakeContext,
    WakeEvent,
    WakeWorker,
    WebhookConfig,
)
from durable_streams.testing import InMemoryServer
from durable_streams.testing._subscriptions import glob_match

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("chats/*", "chats/1", True),
        ("chats/*", "chats/1/2", False),
        ("chats/*", "chats", False),
        ("chats/**", "chats", True),
        ("a/**/z", "a/b/c/z", True),
        ("a/**/z", "a/z", True),
        ("a/**/z", "a/b/c", False),
        ("/a/*/", "a/b", True),
        ("a%2A/*", "a*/b", True),
        ("**/" * 40 + "x", "/".join(["y"] * 60), False),  # memoized, not exponential
    ],
)
def test_glob_patterns(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(pattern, path) is matches


class FakeClock:
    """The lease clock, moved by hand: leases expire when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def subs(
    ds_server: InMemoryServer, ds_client: httpx.AsyncClient
) -> AsyncIterator[SubscriptionClient]:
    async with SubscriptionClient(f"{ds_server.url}/v1/stream", client=ds_client) as client:
        yield client


async def json_stream(subs: SubscriptionClient, path: str) -> None:
    await subs.handle(path, content_type="application/json").create()


async def wake_events(subs: SubscriptionClient, path: str = "wakes") -> list[WakeEvent]:
    async with subs.handle(path).stream(live=False) as read:
        return [WakeEvent.model_validate(event) async for event in read.iter_json()]


def pull_wake(**fields: object) -> SubscriptionConfig:
    return SubscriptionConfig(type="pull-wake", wake_stream="wakes", **fields)


async def test_management_round_trip_and_links(subs: SubscriptionClient) -> None:
    await json_stream(subs, "wakes")
    await json_stream(subs, "a")
    before = await subs.handle("a").append({"before": "link"})  # existing data is not work
    config = pull_wake(streams=("a",), pattern="chats/*", lease_ttl_ms=5000, description="d")

    first = await subs.create("s", config)
    assert first.created
    assert (first.subscription.id, first.subscription.status) == ("s", "active")
    assert (first.subscription.lease_ttl_ms, first.subscription.wake_stream) == (5000, "wakes")
    link = first.subscription.stream("a")
    assert link is not None
    assert (link.link_type, link.acked_offset) == ("explicit", before.next_offset)
    assert not (await subs.create("s", config)).created  # identical: 200
    with pytest.raises(SubscriptionExistsError):
        await subs.create("s", pull_wake(streams=("other",)))

    # A stream the pattern matches is linked by its first append, from its start.
    chat = subs.handle("chats/1", content_type="application/json")
    await chat.create()
    assert (await subs.get("s")).stream("chats/1") is None
    await chat.append({"n": 1})
    glob = (await subs.get("s")).stream("chats/1")
    assert glob is not None
    assert (glob.link_type, glob.acked_offset) == ("glob", "-1")
    await subs.handle("chats/x/deeper", content_type="application/json").create(
        body=json.dumps([{"n": 1}])
    )
    assert (await subs.get("s")).stream("chats/x/deeper") is None  # "*" is one segment

    await subs.link("s", ["b", subs.url_of("c/d")])
    await subs.unlink("s", "b")
    await subs.unlink("s", "chats/1")  # a glob link stays
    assert [s.path for s in (await subs.get("s")).streams] == ["a", "chats/1", "c/d"]
    await subs.handle("a").delete()  # a deleted stream is unlinked
    assert [s.path for s in (await subs.get("s")).streams] == ["chats/1", "c/d"]

    await subs.delete("s")
    await subs.delete("s")  # 204 again
    for call in (subs.get("s"), subs.claim("s", worker="w"), subs.link("s", ["a"])):
        with pytest.raises(SubscriptionNotFoundError):
            await call


async def test_refused_requests(
    subs: SubscriptionClient, ds_server: InMemoryServer, ds_client: httpx.AsyncClient
) -> None:
    with pytest.raises(InvalidSubscriptionRequestError):
        await subs.create("s", SubscriptionConfig(type="pull-wake", pattern="x/*"))
    with pytest.raises(InvalidSubscriptionRequestError):
        await subs.create("s", SubscriptionConfig(type="pull-wake", wake_stream="w"))
    webhook = SubscriptionConfig(
        type="webhook", pattern="x/*", webhook=WebhookConfig(url="http://127.0.0.1:9/h")
    )
    with pytest.raises(InvalidSubscriptionRequestError, match="not supported by durable_stre"):
        await subs.create("hook", webhook)

    control = f"{ds_server.url}/v1/stream/__ds/subscriptions"
    cases = [
        ("PUT", "/s", b'{"type":"pull-wake","pattern":"x","wake_stream":"w","lease_ttl_ms":999}'),
        *[
            ("PUT", "/s", b'{"type":"pull-wake","pattern":"x","lease_ttl_ms":%s}' % bad)
            for bad in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1000.5")
        ],
        ("PUT", "/s", b"{not json"),
        ("POST", "/s/streams", b'{"streams":[""]}'),
        ("POST", "/s/claim", b'{"worker":""}'),
    ]
    for method, path, body in cases:
        reply = await ds_client.request(method, control + path, content=body)
        assert reply.status_code == 400, (method, path, body)
        assert reply.json()["error"]["code"] == "INVALID_REQUEST"
    reply = await ds_client.post(control + "/s/ack", json={})  # no token: 401 before anything
    assert (reply.status_code, reply.json()["error"]["code"]) == (401, "TOKEN_INVALID")
    reply = await ds_client.put(f"{ds_server.url}/v1/stream/__ds/other")
    assert (reply.status_code, reply.json()["error"]["code"]) == (404, "SUBSCRIPTION_NOT_FOUND")
    assert (await ds_client.patch(control + "/s")).status_code == 405


async def test_claim_ack_heartbeat_release_and_fencing(subs: SubscriptionClient) -> None:
    await json_stream(subs, "wakes")
    await json_stream(subs, "a")
    await subs.create("s", pull_wake(streams=("a",)))
    with pytest.raises(NoPendingWorkError):
        await subs.claim("s", worker="w1")

    start = (await subs.handle("a").head()).next_offset
    appended = await subs.handle("a").append({"n": 1})
    [wake] = await wake_events(subs)
    assert (wake.type, wake.subscription_id, wake.stream, wake.generation) == ("wake", "s", "a", 1)
    await subs.handle("a").append({"n": 2})  # a wake is in progress: no second event
    assert len(await wake_events(subs)) == 1

    first = await subs.claim("s", worker="w1")
    assert first.generation == wake.generation  # the claim takes the announced wake
    [stream] = first.pending_streams
    assert (stream.path, stream.acked_offset) == ("a", start)
    with pytest.raises(AlreadyClaimedError) as claimed:
        await subs.claim("s", worker="w2")
    assert (claimed.value.current_holder, claimed.value.generation) == ("w1", first.generation)

    # A heartbeat applies its acks; then each way an ack is refused.
    beat = await subs.heartbeat(first, [StreamAck(stream="a", offset=str(appended.next_offset))])
    assert (beat.ok, beat.next_wake) == (True, False)
    forged = Claim.model_validate(
        {**first.model_dump(), "token": "x" + first.token.get_secret_value()}
    )
    with pytest.raises(WakeTokenError):
        await subs.ack(forged)
    for offset, stream_path in (
        ("-1", "a"),
        (stream.acked_offset, "a"),  # behind the acked offset now
        ("9" * 16 + "_" + "9" * 16, "a"),  # past the tail
        (str(appended.next_offset), "not-linked"),
    ):
        with pytest.raises(AckOffsetError):
            await subs.ack(first, [StreamAck(stream=stream_path, offset=offset)])

    # Released with work left: a new wake at once, the old lease fenced.
    await subs.release(first)
    with pytest.raises(FencedError):
        await subs.heartbeat(first)
    second = await subs.claim("s", worker="w2")
    assert second.generation == first.generation + 1
    assert [w.generation for w in await wake_events(subs)] == [1, 2]
    with pytest.raises(FencedError):
        await subs.ack(first, done=True)
    tail = second.pending_streams[0].tail_offset
    done = await subs.ack(second, [StreamAck(stream="a", offset=str(tail))], done=True)
    assert (done.ok, done.next_wake) == (True, False)
    with pytest.raises(NoPendingWorkError):
        await subs.claim("s", worker="w1")

    # A done ack that leaves work behind issues the next wake.
    await subs.handle("a").append({"n": 3})
    third = await subs.claim("s", worker="w1")
    await subs.handle("a").append({"n": 4})
    assert (await subs.ack(third, [], done=True)).next_wake
    assert (await subs.claim("s", worker="w1")).generation == third.generation + 1
    await subs.delete("s")
    with pytest.raises(SubscriptionNotFoundError):
        await subs.ack(third, done=True)


async def test_a_lease_expires_by_the_server_clock(
    subs: SubscriptionClient, ds_server: InMemoryServer
) -> None:
    clock = FakeClock()
    ds_server.subscriptions.clock = clock
    await json_stream(subs, "wakes")
    await json_stream(subs, "a")
    await subs.create("s", pull_wake(streams=("a",), lease_ttl_ms=1000))
    await subs.handle("a").append({"n": 1})
    first = await subs.claim("s", worker="w1")

    clock.now += 0.9
    await subs.heartbeat(first)  # extends the lease by a whole ttl
    clock.now += 0.9
    with pytest.raises(AlreadyClaimedError):
        await subs.claim("s", worker="w2")
    clock.now += 0.2  # the lease ran out: the next request sees it, the work wakes again
    second = await subs.claim("s", worker="w2")
    assert second.generation == first.generation + 1
    assert [w.generation for w in await wake_events(subs)] == [1, 2]
    with pytest.raises(FencedError):
        await subs.heartbeat(first)

    # Expired with nothing pending: no new wake, the lease is gone all the same.
    tail = second.pending_streams[0].tail_offset
    await subs.heartbeat(second, [StreamAck(stream="a", offset=str(tail))])
    clock.now += 1.0
    with pytest.raises(FencedError):
        await subs.heartbeat(second)
    with pytest.raises(NoPendingWorkError):
        await subs.claim("s", worker="w3")
    clock.now += 3600  # wake tokens live an hour, as the reference server's
    with pytest.raises(WakeTokenError, match="TOKEN_EXPIRED"):
        await subs.heartbeat(second)


@pytest.mark.durable_streams(long_poll_timeout=20.0)
async def test_a_waiting_worker_sees_the_rewake_of_an_expired_lease(
    subs: SubscriptionClient,
) -> None:
    # Real time: a 1 s lease claimed while a reader already waits on the wake stream. The
    # long-poll (20 s) must end with the new wake event when the lease runs out.
    await json_stream(subs, "wakes")
    await json_stream(subs, "a")
    await subs.create("s", pull_wake(streams=("a",), lease_ttl_ms=1000))
    await subs.handle("a").append({"n": 1})
    tail = (await subs.handle("wakes").head()).next_offset
    assert tail is not None
    seen: list[WakeEvent] = []
    waiting = anyio.Event()

    async def tail_wakes() -> None:
        async with subs.handle("wakes").stream(offset=tail, live="long-poll") as read:
            waiting.set()
            async for event in read.iter_json():
                seen.append(WakeEvent.model_validate(event))
                return

    with anyio.fail_after(8):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tail_wakes)
            await waiting.wait()
            first = await subs.claim("s", worker="crashed")  # and never heard of again
    [rewake] = seen
    assert (rewake.stream, rewake.generation) == ("a", first.generation + 1)
    taken = await subs.claim("s", worker="w2")
    assert (taken.wake_id, taken.generation) != (first.wake_id, first.generation)
    assert taken.generation == rewake.generation


class SettlingClient(SubscriptionClient):
    """Tells when a done ack left no work behind (``next_wake`` false)."""

    def __init__(self, root: str, client: httpx.AsyncClient, ready: Callable[[], bool]) -> None:
        super().__init__(root, client=client)
        self.ready = ready
        self.settled = anyio.Event()

    async def ack(
        self, claim: Claim, acks: Iterable[StreamAck] = (), *, done: bool = False
    ) -> AckResult:
        result = await super().ack(claim, acks, done=done)
        # Every item handled before this answer, and nothing pending at the server after it.
        if done and not result.next_wake and self.ready():
            self.settled.set()
        return result


async def test_a_wake_worker_drains_several_streams(
    ds_server: InMemoryServer, ds_client: httpx.AsyncClient
) -> None:
    names = ("1", "2", "3")
    handled: list[tuple[str, object]] = []
    subs = SettlingClient(
        f"{ds_server.url}/v1/stream", ds_client, lambda: len(handled) == 3 * len(names)
    )
    await json_stream(subs, "wakes")
    await subs.create("s", pull_wake(pattern="chats/*", lease_ttl_ms=5000))
    for name in names:
        await subs.handle(f"chats/{name}", content_type="application/json").create(
            body=json.dumps([{"chat": name, "n": 0}])
        )

    def handler(item: object, context: WakeContext) -> None:
        handled.append((context.stream, item))

    with anyio.fail_after(8):
        async with WakeWorker(subs, ["s"], handler, poll_interval=None):  # wake events only
            for n in (1, 2):
                for name in names:
                    await subs.handle(f"chats/{name}").append({"chat": name, "n": n})
            await subs.settled.wait()
    for name in names:
        items = [item for stream, item in handled if stream == f"chats/{name}"]
        assert items == [{"chat": name, "n": n} for n in range(3)]
    for link in (await subs.get("s")).streams:
        assert link.acked_offset == (await subs.handle(link.path).head()).next_offset
    with pytest.raises(NoPendingWorkError):
        await subs.claim("s", worker="probe")
    read = await ds_client.get(subs.url_of("wakes"), params={"offset": "-1"})
    events = read.json()
    assert all(
        set(event) == {"type", "subscription_id", "stream", "generation", "ts"} for event in events
    )
    generations = [event["generation"] for event in events]
    assert generations == sorted(set(generations))  # one event per wake, increasing
    assert {event["stream"] for event in events} <= {f"chats/{name}" for name in names}
