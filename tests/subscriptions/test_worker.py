"""WakeWorker against a fake server: streams served in memory, control routes scripted.

Stream reads (the woken streams and the live wake stream) go to
``durable_streams.testing.InMemoryServer``; ``/__ds/subscriptions/...`` requests go to
a scripted :class:`Control` that records them. No wall-clock assertions: tests wait
on events (bounded by ``fail_after``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from durable_streams import FailureAction, ItemFailure, StreamHandle
from durable_streams.subscriptions import SubscriptionClient, WakeContext, WakeWorker
from durable_streams.subscriptions import _worker as worker_module
from durable_streams.testing import InMemoryServer

pytestmark = pytest.mark.anyio

ROOT_PATH = "/v1/stream"
CONTROL = f"{ROOT_PATH}/__ds/subscriptions/"
TOKEN = "tok-very-secret-123"


def error(status: int, code: str, **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code, **extra}})


@dataclass
class Call:
    subscription: str
    action: str
    body: dict[str, Any]
    authorization: str | None


@dataclass
class Control:
    """The scripted control routes: claims hand out one wake per subscription in
    ``pending`` (then NO_PENDING_WORK); ``on_ack`` answers acks."""

    pending: dict[str, list[str]] = field(default_factory=dict)  # subscription -> streams
    calls: list[Call] = field(default_factory=list)
    generation: int = 0
    lease_ttl_ms: int = 3000
    linked: list[str] = field(default_factory=list)  # the streams GET reports as linked
    acked_offset: str = "-1"  # where a claimed stream was acked up to
    hold_done: anyio.Event | None = None  # set: done acks wait for it (after done_sent)
    # Streams answered 410: "history" for reads from the claimed acked offset (its data
    # is no longer retained), "stream" for every read (soft-deleted).
    gone: dict[str, str] = field(default_factory=dict)
    done_sent: anyio.Event = field(default_factory=anyio.Event)
    on_claim: Callable[[str], httpx.Response | None] = lambda sid: None
    on_ack: Callable[[Call], httpx.Response | None] = lambda call: None
    changed: anyio.Event = field(default_factory=anyio.Event)

    def answer(
        self, sid: str, action: str, body: dict[str, Any], auth: str | None
    ) -> httpx.Response:
        call = Call(sid, action, body, auth)
        self.calls.append(call)
        self.changed.set()
        self.changed = anyio.Event()
        if action == "":
            doc = {
                "id": sid,
                "type": "pull-wake",
                "pattern": "chats/*",
                "wake_stream": "wakes",
                "lease_ttl_ms": self.lease_ttl_ms,
                "created_at": "2026-11-29T09:00:00Z",
                "status": "active",
                "streams": [
                    {"path": path, "link_type": "glob", "acked_offset": "-1"}
                    for path in self.linked
                ],
            }
            return httpx.Response(200, json=doc)
        if action == "claim":
            scripted = self.on_claim(sid)
            if scripted is not None:
                return scripted
            streams = self.pending.pop(sid, None)
            if streams is None:
                return error(409, "NO_PENDING_WORK")
            self.generation += 1
            return httpx.Response(
                200,
                json={
                    "wake_id": f"w_{self.generation}",
                    "generation": self.generation,
                    "token": TOKEN,
                    "lease_ttl_ms": self.lease_ttl_ms,
                    "streams": [
                        {
                            "path": path,
                            "link_type": "glob",
                            "acked_offset": self.acked_offset,
                            "tail_offset": "9" * 16,
                            "has_pending": True,
                        }
                        for path in streams
                    ],
                },
            )
        if action == "ack":
            return self.on_ack(call) or httpx.Response(200, json={"ok": True, "next_wake": False})
        if action == "release":
            return httpx.Response(204)
        return error(404, "SUBSCRIPTION_NOT_FOUND")

    def of(self, action: str) -> list[Call]:
        return [call for call in self.calls if call.action == action]

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self.changed.wait()


class FakeTransport(httpx.AsyncBaseTransport):
    def __init__(self, server: InMemoryServer, control: Control) -> None:
        self.streams = server.transport()
        self.control = control

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.startswith(CONTROL):
            kind = self.control.gone.get(path.removeprefix(f"{ROOT_PATH}/"))
            offset = request.url.params.get("offset")
            if kind == "stream" or (kind == "history" and offset == self.control.acked_offset):
                return httpx.Response(410, text="gone")
            return await self.streams.handle_async_request(request)
        sid, _, action = path[len(CONTROL) :].partition("/")
        body = json.loads(await request.aread() or b"{}")
        if action == "ack" and body.get("done") and self.control.hold_done is not None:
            self.control.done_sent.set()
            await self.control.hold_done.wait()
        return self.control.answer(sid, action, body, request.headers.get("authorization"))


@dataclass
class Env:
    server: InMemoryServer
    control: Control
    subs: SubscriptionClient

    async def stream(self, path: str, items: list[Any]) -> list[str]:
        """Create a JSON stream with ``items`` appended one by one; the offsets after each."""
        handle = StreamHandle(
            self.server.stream_url(path), client=self.subs.client, content_type="application/json"
        )
        await handle.create()
        return [str((await handle.append(item)).next_offset) for item in items]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    server = InMemoryServer(page_size=2, long_poll_timeout=1.0)
    control = Control()
    async with httpx.AsyncClient(transport=FakeTransport(server, control)) as http:
        subs = SubscriptionClient(f"{server.url}{ROOT_PATH}", client=http)
        environment = Env(server, control, subs)
        await environment.stream("wakes", [])
        yield environment


def worker(env: Env, handler: Any, ids: tuple[str, ...] = ("sub",), **options: Any) -> WakeWorker:
    options.setdefault("poll_interval", None)
    return WakeWorker(env.subs, ids, handler, worker="w-test", **options)


async def test_heartbeats_every_third_of_the_lease_while_the_handler_runs(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    offsets = await env.stream("chats/1", [{"n": 1}, {"n": 2}, {"n": 3}])
    env.control.pending["sub"] = ["chats/1"]
    requested: list[float] = []

    async def fast_sleep(seconds: float) -> None:
        requested.append(seconds)
        await anyio.sleep(0.001)  # the lease's time passes fast; the order of events is real

    monkeypatch.setattr(worker_module, "_sleep", fast_sleep)
    three_beats = anyio.Event()
    env.control.on_ack = lambda call: three_beats.set() if len(env.control.of("ack")) >= 3 else None
    seen: list[tuple[Any, WakeContext]] = []

    async def handler(item: Any, context: WakeContext) -> None:
        seen.append((item, context))
        if item["n"] == 2:
            await three_beats.wait()  # a long item: the lease must hold meanwhile

    with anyio.fail_after(10):
        async with worker(env, handler):
            await env.control.wait_for(
                lambda: any(c.body.get("done") for c in env.control.of("ack"))
            )
    acks = env.control.of("ack")
    assert [item["n"] for item, _ in seen] == [1, 2, 3]
    assert seen[0][1] == WakeContext("sub", "chats/1", "w_1", 1, "w-test")
    assert all(not call.body["done"] for call in acks[:-1])
    assert len(acks) >= 4  # three heartbeats while item 2 was handled, then done
    assert requested[0] == pytest.approx(env.control.lease_ttl_ms / 3000)
    assert set(requested) == {requested[0]}
    # Heartbeats carry the progress: the first page (items 1-2) is acked once handled.
    assert acks[0].body["acks"] in ([], [{"stream": "chats/1", "offset": offsets[1]}])
    assert acks[-1].body == {
        "wake_id": "w_1",
        "generation": 1,
        "acks": [{"stream": "chats/1", "offset": offsets[2]}],
        "done": True,
    }
    assert all(call.authorization == f"Bearer {TOKEN}" for call in acks)
    assert not env.control.of("release")


async def test_fenced_cancels_the_handler_and_nothing_is_acked_after(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await env.stream("chats/1", [{"n": 1}, {"n": 2}])
    env.control.pending["sub"] = ["chats/1"]
    env.control.on_ack = lambda call: error(409, "FENCED")
    cancelled = anyio.Event()

    async def handler(item: Any, context: WakeContext) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(10):
        async with worker(env, handler, heartbeat_interval=0.01) as running:
            await cancelled.wait()
            # The wake is over once the worker claims again (after its wake ended).
            running.kick()
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 2)
    assert len(env.control.of("ack")) == 1  # the heartbeat that was fenced
    assert not env.control.of("ack")[0].body["done"]
    assert not env.control.of("release")


@pytest.mark.parametrize("on_error", [None, "skip"])
async def test_a_failing_handler_releases_after_acking_what_completed(
    env: Env, on_error: str | None
) -> None:
    offsets = await env.stream("chats/1", [{"n": 1}, {"n": 2}, {"n": 3}])
    env.control.pending["sub"] = ["chats/1"]
    failures: list[ItemFailure] = []

    def skip(failure: ItemFailure) -> FailureAction:
        failures.append(failure)
        return FailureAction.SKIP

    def handler(item: Any, context: WakeContext) -> None:  # a sync handler
        if item["n"] == 3:
            raise RuntimeError("poison")

    options: dict[str, Any] = {"on_error": skip} if on_error else {}
    with anyio.fail_after(10):
        async with worker(env, handler, **options):
            await env.control.wait_for(
                lambda: (
                    bool(env.control.of("release"))
                    or any(c.body.get("done") for c in env.control.of("ack"))
                )
            )
    acks = env.control.of("ack")
    if on_error is None:
        # Items 1-2 (the first page) completed: acked, then the wake is given back.
        assert [call.body for call in acks] == [
            {
                "wake_id": "w_1",
                "generation": 1,
                "acks": [{"stream": "chats/1", "offset": offsets[1]}],
                "done": False,
            }
        ]
        assert [call.body for call in env.control.of("release")] == [
            {"wake_id": "w_1", "generation": 1}
        ]
    else:
        assert [f.item["n"] for f in failures] == [3]
        assert acks[-1].body["done"] is True
        assert acks[-1].body["acks"] == [{"stream": "chats/1", "offset": offsets[2]}]
        assert not env.control.of("release")


async def test_already_claimed_and_no_pending_work_are_quiet(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.control.on_claim = lambda sid: error(
        409, "ALREADY_CLAIMED", current_holder="w-other", generation=4
    )
    caplog.set_level(logging.DEBUG, logger="durable_streams")

    def handler(item: Any, context: WakeContext) -> None:
        raise AssertionError("no wake was claimed")

    with anyio.fail_after(10):
        async with worker(env, handler, ids=("sub", "other")) as running:
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 2)
            env.control.on_claim = lambda sid: None  # now: NO_PENDING_WORK
            running.kick()
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 4)
            assert not running.active
    assert not env.control.of("ack")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_shutdown_releases_the_wakes_in_progress(env: Env) -> None:
    await env.stream("chats/1", [{"n": 1}])
    env.control.pending["sub"] = ["chats/1"]
    started = anyio.Event()

    async def handler(item: Any, context: WakeContext) -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with worker(env, handler) as running:
            await started.wait()
            assert running.active == {"sub"}
    assert [call.body for call in env.control.of("release")] == [
        {"wake_id": "w_1", "generation": 1}
    ]
    assert not [call for call in env.control.of("ack") if call.body["done"]]


async def test_wakes_in_progress_are_bounded(env: Env) -> None:
    for name in ("a", "b", "c"):
        await env.stream(f"chats/{name}", [{"n": name}])
        env.control.pending[name] = [f"chats/{name}"]
    running_items: set[str] = set()
    go: dict[str, anyio.Event] = {name: anyio.Event() for name in "abc"}
    two_running = anyio.Event()
    most = 0

    async def handler(item: Any, context: WakeContext) -> None:
        nonlocal most
        running_items.add(item["n"])
        most = max(most, len(running_items))
        if len(running_items) == 2:
            two_running.set()
        await go[item["n"]].wait()
        running_items.discard(item["n"])

    with anyio.fail_after(10):
        async with worker(env, handler, ids=("a", "b", "c"), max_concurrent_wakes=2):
            await two_running.wait()
            # The third subscription is not even claimed while two wakes run.
            assert sorted(c.subscription for c in env.control.of("claim")) == ["a", "b"]
            go["a"].set()
            go["b"].set()
            go["c"].set()
            await env.control.wait_for(
                lambda: sum(1 for c in env.control.of("ack") if c.body["done"]) == 3
            )
    assert most == 2


def test_options_are_checked() -> None:
    subs = SubscriptionClient("http://streams.test/v1/stream")
    with pytest.raises(ValueError, match="max_concurrent_wakes"):
        WakeWorker(subs, ["s"], print, max_concurrent_wakes=0)
    with pytest.raises(ValueError, match="subscription_ids"):
        WakeWorker(subs, [], print)
    with pytest.raises(ValueError, match="handler"):
        WakeWorker(subs, ["s"], None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heartbeat_interval"):
        WakeWorker(subs, ["s"], print, heartbeat_interval=0)


async def test_a_lease_that_cannot_be_renewed_stops_the_wake(env: Env) -> None:
    await env.stream("chats/1", [{"n": 1}])
    env.control.pending["sub"] = ["chats/1"]
    env.control.lease_ttl_ms = 300
    env.control.on_ack = lambda call: httpx.Response(503)  # heartbeats never get through
    cancelled = anyio.Event()

    async def handler(item: Any, context: WakeContext) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(10):
        async with worker(env, handler, heartbeat_interval=0.05) as running:
            await cancelled.wait()  # the lease ran out: processing it any longer is unsafe
            running.kick()
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 2)
    assert env.control.of("ack")  # it tried
    assert not [call for call in env.control.of("ack") if call.body["done"]]
    assert not env.control.of("release")


async def test_polling_claims_work_that_came_without_a_wake_event(env: Env) -> None:
    await env.stream("chats/1", [{"n": 1}])
    handled = anyio.Event()

    def handler(item: Any, context: WakeContext) -> None:
        handled.set()

    with anyio.fail_after(10):
        async with worker(env, handler, poll_interval=0.02):
            await env.control.wait_for(lambda: len(env.control.of("claim")) >= 2)
            env.control.pending["sub"] = ["chats/1"]  # pending now, and no event says so
            await handled.wait()


async def test_a_refused_done_ack_leaves_the_worker_running(env: Env) -> None:
    await env.stream("chats/1", [{"n": 1}])
    env.control.pending["sub"] = ["chats/1"]
    env.control.linked = ["chats/1"]  # still linked: the refusal is not about a stale stream
    env.control.on_ack = lambda call: error(409, "INVALID_OFFSET") if call.body["done"] else None

    def handler(item: Any, context: WakeContext) -> None:
        pass

    with anyio.fail_after(10):
        async with worker(env, handler) as running:
            await env.control.wait_for(lambda: bool(env.control.of("ack")))
            running.kick()  # still serving: it claims again (the lease would expire meanwhile)
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 2)
    assert [call.body["done"] for call in env.control.of("ack")] == [True]
    assert not env.control.of("release")


async def test_wake_events_trigger_claims_and_malformed_ones_are_ignored(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    await env.stream("chats/1", [{"n": 1}])
    wakes = StreamHandle(
        env.server.stream_url("wakes"), client=env.subs.client, content_type="application/json"
    )
    handled = anyio.Event()

    def handler(item: Any, context: WakeContext) -> None:
        handled.set()

    with anyio.fail_after(10):
        async with worker(env, handler, ids=("sub",)):
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 1)  # startup
            env.control.pending["sub"] = ["chats/1"]
            await wakes.append({"type": "wake", "subscription_id": "someone-else"})
            await wakes.append({"type": 5})  # malformed: ignored, with a warning
            await wakes.append(
                {"type": "wake", "subscription_id": "sub", "stream": "chats/1", "generation": 1}
            )
            await handled.wait()
    assert len(env.control.of("claim")) == 2  # the event for "sub" only
    assert "malformed event" in caplog.text


@dataclass
class Pauses:
    """The pauses the worker takes before claiming a subscription again (not waited)."""

    requested: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        await anyio.lowlevel.checkpoint()


async def test_a_wake_that_acks_nothing_while_woken_again_is_paced(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The stream cannot be read from the claimed offset (400: never skipped), and the
    # server keeps answering the empty done ack with next_wake: each claim must follow
    # a growing pause, never come at once.
    await env.stream("chats/1", [{"n": 1}])
    env.control.acked_offset = "not-an-offset"

    def always_pending(sid: str) -> None:
        env.control.pending[sid] = ["chats/1"]

    env.control.on_claim = always_pending
    env.control.on_ack = lambda call: httpx.Response(200, json={"ok": True, "next_wake": True})
    pauses = Pauses()
    monkeypatch.setattr(worker_module, "_pause", pauses, raising=False)

    def handler(item: Any, context: WakeContext) -> None:
        raise AssertionError("nothing can be read")

    with anyio.fail_after(10):
        async with worker(env, handler):
            await env.control.wait_for(lambda: len(env.control.of("claim")) >= 4)
    done_acks = [call.body for call in env.control.of("ack") if call.body["done"]]
    assert done_acks[0]["acks"] == []  # nothing acked: a 400 never skips data
    assert len(pauses.requested) >= 3  # one before each claim again
    for count, pause in enumerate(pauses.requested[:3], start=1):
        bound = worker_module.FIRST_FAILURE_PAUSE * 2 ** (count - 1)
        assert bound / 2 <= pause <= bound  # exponential, with jitter
    assert "acknowledged nothing" in caplog.text


async def test_a_gone_stream_is_acked_to_the_wake_tail_with_a_warning(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # chats/gone was never created here: 404, like a stream whose TTL expired (the
    # reference server keeps such a stream linked and pending).
    offsets = await env.stream("chats/1", [{"n": 1}])
    env.control.pending["sub"] = ["chats/gone", "chats/1"]
    env.control.on_ack = lambda call: httpx.Response(200, json={"ok": True, "next_wake": False})
    pauses = Pauses()
    monkeypatch.setattr(worker_module, "_pause", pauses, raising=False)
    handled: list[Any] = []

    with anyio.fail_after(10):
        async with worker(env, lambda item, context: handled.append(item)):
            await env.control.wait_for(
                lambda: any(c.body.get("done") for c in env.control.of("ack"))
            )
    [done] = [call.body for call in env.control.of("ack") if call.body["done"]]
    assert done["acks"] == [
        {"stream": "chats/gone", "offset": "9" * 16},
        {"stream": "chats/1", "offset": offsets[0]},
    ]
    assert handled == [{"n": 1}]
    assert pauses.requested == []
    assert "chats/gone of subscription sub is gone (404)" in caplog.text


async def test_a_stream_unlinked_during_the_wake_does_not_fail_the_other_acks(env: Env) -> None:
    offsets = await env.stream("chats/1", [{"n": 1}])
    await env.stream("chats/2", [{"n": 2}])
    env.control.pending["sub"] = ["chats/1", "chats/2"]
    env.control.linked = ["chats/1"]  # chats/2 was deleted meanwhile: the server unlinked it

    def refuse_chats_2(call: Call) -> httpx.Response | None:
        if any(ack["stream"] == "chats/2" for ack in call.body["acks"]):
            return error(409, "INVALID_OFFSET")
        return None

    env.control.on_ack = refuse_chats_2

    with anyio.fail_after(10):
        async with worker(env, lambda item, context: None):
            await env.control.wait_for(
                lambda: sum(1 for c in env.control.of("ack") if c.body["done"]) == 2
            )
    first, second = [call.body["acks"] for call in env.control.of("ack") if call.body["done"]]
    assert [ack["stream"] for ack in first] == ["chats/1", "chats/2"]
    assert second == [{"stream": "chats/1", "offset": offsets[0]}]  # applied
    assert not env.control.of("release")


async def test_cancelling_during_the_done_ack_still_gives_the_wake_back(env: Env) -> None:
    offsets = await env.stream("chats/1", [{"n": 1}])
    env.control.pending["sub"] = ["chats/1"]
    env.control.hold_done = anyio.Event()  # never set: the done ack hangs until cancelled

    with anyio.fail_after(10):
        async with worker(env, lambda item, context: None):
            await env.control.done_sent.wait()
        # Leaving the block cancelled the done ack in flight.
    assert [call.body for call in env.control.of("ack")] == [
        {
            "wake_id": "w_1",
            "generation": 1,
            "acks": [{"stream": "chats/1", "offset": offsets[0]}],
            "done": False,
        }
    ]
    assert [call.body for call in env.control.of("release")] == [
        {"wake_id": "w_1", "generation": 1}
    ]


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("slow", ["claim", "heartbeat"])
async def test_the_lease_is_counted_from_when_the_request_was_sent(
    env: Env, monkeypatch: pytest.MonkeyPatch, slow: str
) -> None:
    # A 3 s lease; heartbeats every second; the claim (or the first heartbeat) takes
    # 2 s to be answered. The server's lease started when it handled the request, so
    # the worker must count it from the sending: after 3 s without a renewal sent,
    # the wake is stopped.
    await env.stream("chats/1", [{"n": 1}])
    env.control.pending["sub"] = ["chats/1"]
    clock = FakeClock()
    monkeypatch.setattr(worker_module, "_clock", clock)
    monkeypatch.setattr(worker_module, "_sleep", clock.sleep)

    def slow_claim(sid: str) -> None:
        if slow == "claim":
            clock.now += 2.0

    def slow_heartbeat(call: Call) -> None:
        if slow == "heartbeat" and not call.body["done"]:
            clock.now += 2.0

    env.control.on_claim = slow_claim
    env.control.on_ack = slow_heartbeat
    cancelled = anyio.Event()

    async def handler(item: Any, context: WakeContext) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with anyio.fail_after(10):
        async with worker(env, handler, heartbeat_interval=1.0):
            await cancelled.wait()  # the lease was counted as over: the wake stopped
    # Claim sent at 0, answered at 2: at 3 the lease is over before any heartbeat.
    # Heartbeat sent at 1, answered at 3: renewed until 4, over at the next beat.
    assert len(env.control.of("ack")) == (0 if slow == "claim" else 1)
    assert not env.control.of("release")


async def test_a_claim_held_under_this_workers_own_name_is_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    # A retried claim whose first answer was lost: the server names this worker.
    env.control.on_claim = lambda sid: error(
        409, "ALREADY_CLAIMED", current_holder="w-test", generation=7
    )
    caplog.set_level(logging.INFO, logger="durable_streams.subscriptions")

    with anyio.fail_after(10):
        async with worker(env, lambda item, context: None):
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 1)
    [record] = [r for r in caplog.records if r.levelno == logging.INFO]
    assert "held by this worker's name (w-test, generation 7)" in record.getMessage()
    assert "lost" in record.getMessage()


async def test_a_truncated_claim_answer_logs_no_piece_of_the_token(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "tok-" + "s3cr3t-value-0123456789abcdef" * 2
    document = json.dumps({"wake_id": "w_1", "generation": 1, "token": secret})
    truncated = document[: document.index(secret) + 30].encode()
    env.control.on_claim = lambda sid: httpx.Response(200, content=truncated)
    caplog.set_level(logging.DEBUG)

    with anyio.fail_after(10):
        async with worker(env, lambda item, context: None):
            await env.control.wait_for(lambda: len(env.control.of("claim")) == 1)
            while "claiming subscription sub failed" not in caplog.text:
                await env.control.changed.wait()
    pieces = [secret[i : i + 8] for i in range(len(secret) - 7)]
    assert not [piece for piece in pieces if piece in caplog.text]


@pytest.mark.parametrize("gone", ["history", "stream"])
async def test_a_410_reads_what_is_still_retained_or_acks_the_tail(
    env: Env, caplog: pytest.LogCaptureFixture, gone: str
) -> None:
    offsets = await env.stream("chats/1", [{"n": 1}, {"n": 2}, {"n": 3}])
    env.control.pending["sub"] = ["chats/1"]
    env.control.acked_offset = offsets[0]  # item 1 was acked; its data is no longer kept
    env.control.gone["chats/1"] = gone
    handled: list[Any] = []

    with anyio.fail_after(10):
        async with worker(env, lambda item, context: handled.append(item["n"])):
            await env.control.wait_for(
                lambda: any(c.body.get("done") for c in env.control.of("ack"))
            )
    [done] = [call.body["acks"] for call in env.control.of("ack") if call.body["done"]]
    assert "no longer has the data at its acked offset (410)" in caplog.text
    if gone == "history":
        # Read again from the oldest data retained (here: all of it), never skipped.
        assert handled == [1, 2, 3]
        assert done == [{"stream": "chats/1", "offset": offsets[2]}]
    else:
        assert handled == []
        assert done == [{"stream": "chats/1", "offset": "9" * 16}]
        assert "chats/1 of subscription sub is gone (410)" in caplog.text
    assert all(ack["offset"] != "-1" for call in env.control.of("ack") for ack in call.body["acks"])
