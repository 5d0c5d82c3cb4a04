"""SubscriptionClient request building, response validation and error mapping (respx)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

import durable_streams._retry
from durable_streams import (
    AckOffsetError,
    AlreadyClaimedError,
    FencedError,
    InvalidArgumentError,
    InvalidSubscriptionRequestError,
    NoPendingWorkError,
    ParseError,
    RetryPolicy,
    ServerError,
    StatusError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    WakeTokenError,
    WakeTokenExpiredError,
    WebhookUrlRejectedError,
)
from durable_streams.subscriptions import (
    Claim,
    StreamAck,
    SubscriptionClient,
    SubscriptionConfig,
)

pytestmark = pytest.mark.anyio

ROOT = "http://streams.test/v1/stream"
SUBS = f"{ROOT}/__ds/subscriptions"
TOKEN = "eyJzdWIiOiJzdWJzY3JpcHRpb246aW5kZXhlciJ9.c2lnbmF0dXJlLXNlY3JldA"
OFFSET = "0000000000000000_0000000000000042"


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(durable_streams._retry, "_sleep", fake_sleep)
    return recorded


@pytest.fixture
async def mock() -> AsyncIterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def subs() -> AsyncIterator[SubscriptionClient]:
    async with SubscriptionClient(ROOT + "/", headers={"x-tenant": "t1"}) as client:
        yield client


def subscription_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "indexer",
        "subscription_id": "indexer",
        "type": "pull-wake",
        "pattern": "chats/*",
        "streams": [{"path": "chats/1", "link_type": "glob", "acked_offset": OFFSET}],
        "wake_stream": "wakes",
        "lease_ttl_ms": 5000,
        "created_at": "2026-11-29T09:00:00.000Z",
        "status": "active",
    }
    doc.update(overrides)
    return doc


def claim_doc() -> dict[str, Any]:
    return {
        "wake_id": "w_1",
        "generation": 3,
        "token": TOKEN,
        "lease_ttl_ms": 5000,
        "streams": [
            {
                "path": "chats/1",
                "link_type": "glob",
                "acked_offset": "-1",
                "tail_offset": OFFSET,
                "has_pending": True,
            },
            {
                "path": "chats/2",
                "link_type": "explicit",
                "acked_offset": OFFSET,
                "tail_offset": OFFSET,
                "has_pending": False,
            },
        ],
    }


def error(status: int, code: str, **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code.lower(), **extra}})


def make_claim() -> Claim:
    return Claim.model_validate({**claim_doc(), "subscription_id": "indexer"})


# -- management ------------------------------------------------------------------------------


async def test_create_sends_the_config_with_root_relative_paths(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    route = mock.put(f"{SUBS}/indexer").mock(
        side_effect=[
            httpx.Response(201, json=subscription_doc()),
            httpx.Response(200, json=subscription_doc()),
        ]
    )
    config = SubscriptionConfig(
        type="pull-wake",
        streams=(f"{ROOT}/chats/1", "/chats/2/"),
        wake_stream=f"{ROOT}/wakes",
        lease_ttl_ms=5000,
    )
    first = await subs.create("indexer", config)
    second = await subs.create("indexer", config)
    assert (first.created, second.created) == (True, False)
    assert first.subscription.stream("chats/1") is not None
    assert first.subscription.lease_ttl_ms == 5000
    request = route.calls[0].request
    assert json.loads(request.content) == {
        "type": "pull-wake",
        "streams": ["chats/1", "chats/2"],
        "wake_stream": "wakes",
        "lease_ttl_ms": 5000,
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "t1"


async def test_get_parses_streams_status_and_signing(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    doc = subscription_doc(
        type="webhook",
        wake_stream=None,
        webhook={
            "url": "http://localhost:9/hook",
            "signing": {"alg": "ed25519", "kid": "ds_k", "jwks_url": f"{ROOT}/__ds/jwks.json"},
        },
        future_field=True,
    )
    mock.get(f"{SUBS}/indexer").mock(return_value=httpx.Response(200, json=doc))
    sub = await subs.get("indexer")
    assert sub.type == "webhook"
    assert sub.status == "active"
    assert sub.webhook is not None
    assert sub.webhook.signing is not None
    assert sub.webhook.signing.kid == "ds_k"
    assert [(s.path, s.link_type, s.acked_offset) for s in sub.streams] == [
        ("chats/1", "glob", OFFSET)
    ]


async def test_ids_and_paths_are_url_encoded(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    link = mock.post(f"{SUBS}/a%2Fb%20c/streams").mock(return_value=httpx.Response(204))
    unlink = mock.delete(f"{SUBS}/a%2Fb%20c/streams/chats%2F1").mock(
        return_value=httpx.Response(204)
    )
    delete = mock.delete(f"{SUBS}/a%2Fb%20c").mock(return_value=httpx.Response(204))
    await subs.link("a/b c", ["chats/1", f"{ROOT}/chats/2"])
    await subs.unlink("a/b c", f"{ROOT}/chats/1")
    await subs.delete("a/b c")
    assert json.loads(link.calls[0].request.content) == {"streams": ["chats/1", "chats/2"]}
    assert unlink.called
    assert delete.called


def test_paths_and_urls_map_both_ways() -> None:
    subs = SubscriptionClient(ROOT)
    assert subs.path_of(f"{ROOT}/chats/42") == "chats/42"
    assert subs.path_of("chats/42/") == "chats/42"
    assert subs.url_of("chats/42") == f"{ROOT}/chats/42"
    assert subs.handle("chats/42").url == f"{ROOT}/chats/42"
    assert subs.handle("chats/42").client is subs.client
    with pytest.raises(InvalidArgumentError, match="not under the stream root"):
        subs.path_of("http://elsewhere.test/v1/stream/chats/42")
    with pytest.raises(InvalidArgumentError):
        subs.path_of("/")


async def test_invalid_arguments_are_refused_before_any_request(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    with pytest.raises(InvalidArgumentError):
        await subs.link("indexer", "chats/1")
    with pytest.raises(InvalidArgumentError):
        await subs.link("indexer", [])
    with pytest.raises(InvalidArgumentError):
        await subs.claim("indexer", worker="")
    with pytest.raises(InvalidArgumentError):
        await subs.get("")
    with pytest.raises(InvalidArgumentError, match="lease_ttl_ms"):
        SubscriptionConfig(type="pull-wake", wake_stream="w", lease_ttl_ms=10)
    with pytest.raises(InvalidArgumentError, match="type"):
        SubscriptionConfig(type="push", wake_stream="w")
    assert not mock.calls


# -- claims, acks, releases, callbacks -------------------------------------------------------


async def test_claim_returns_the_lease_and_hides_its_token(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    route = mock.post(f"{SUBS}/indexer/claim").mock(
        return_value=httpx.Response(200, json=claim_doc())
    )
    claim = await subs.claim("indexer", worker="w-1")
    assert json.loads(route.calls[0].request.content) == {"worker": "w-1"}
    assert claim.subscription_id == "indexer"
    assert (claim.wake_id, claim.generation, claim.lease_ttl_ms) == ("w_1", 3, 5000)
    assert [s.path for s in claim.pending_streams] == ["chats/1"]
    assert claim.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(claim)
    assert TOKEN not in str(claim)


async def test_ack_heartbeat_and_callback_share_one_request_shape(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    ack = mock.post(f"{SUBS}/indexer/ack").mock(
        return_value=httpx.Response(200, json={"ok": True, "next_wake": True})
    )
    callback_url = f"{SUBS}/hooked/callback"
    callback = mock.post(callback_url).mock(
        return_value=httpx.Response(200, json={"ok": True, "next_wake": False})
    )
    claim = make_claim()
    acks = [StreamAck(stream=f"{ROOT}/chats/1", offset=OFFSET)]
    done = await subs.ack(claim, acks, done=True)
    beat = await subs.heartbeat(claim)
    called = await subs.ack_callback(
        callback_url, "cb-token-123", wake_id="w_9", generation=9, acks=acks, done=True
    )
    assert done.next_wake
    assert not called.next_wake
    assert beat.ok
    bodies = [json.loads(call.request.content) for call in (*ack.calls, *callback.calls)]
    assert bodies == [
        {
            "wake_id": "w_1",
            "generation": 3,
            "acks": [{"stream": "chats/1", "offset": OFFSET}],
            "done": True,
        },
        {"wake_id": "w_1", "generation": 3, "acks": [], "done": False},
        {
            "wake_id": "w_9",
            "generation": 9,
            "acks": [{"stream": "chats/1", "offset": OFFSET}],
            "done": True,
        },
    ]
    assert ack.calls[0].request.headers["authorization"] == f"Bearer {TOKEN}"
    assert callback.calls[0].request.headers["authorization"] == "Bearer cb-token-123"


async def test_release_sends_the_wake_identity(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    route = mock.post(f"{SUBS}/indexer/release").mock(return_value=httpx.Response(204))
    await subs.release(make_claim())
    request = route.calls[0].request
    assert json.loads(request.content) == {"wake_id": "w_1", "generation": 3}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


CODES = [
    (400, "INVALID_REQUEST", InvalidSubscriptionRequestError),
    (400, "WEBHOOK_URL_REJECTED", WebhookUrlRejectedError),
    (401, "TOKEN_INVALID", WakeTokenError),
    (401, "TOKEN_EXPIRED", WakeTokenExpiredError),
    (404, "SUBSCRIPTION_NOT_FOUND", SubscriptionNotFoundError),
    (409, "SUBSCRIPTION_ALREADY_EXISTS", SubscriptionExistsError),
    (409, "ALREADY_CLAIMED", AlreadyClaimedError),
    (409, "FENCED", FencedError),
    (409, "NO_PENDING_WORK", NoPendingWorkError),
    (409, "INVALID_OFFSET", AckOffsetError),
]


@pytest.mark.parametrize(("status", "code", "cls"), CODES)
async def test_every_error_code_through_the_client(
    mock: respx.MockRouter, subs: SubscriptionClient, status: int, code: str, cls: type[StatusError]
) -> None:
    answer = error(status, code)
    mock.put(f"{SUBS}/indexer").mock(return_value=answer)
    mock.post(f"{SUBS}/indexer/claim").mock(return_value=answer)
    mock.post(f"{SUBS}/indexer/ack").mock(return_value=answer)
    with pytest.raises(cls) as created:
        await subs.create(
            "indexer", SubscriptionConfig(type="pull-wake", streams=("a",), wake_stream="w")
        )
    with pytest.raises(cls):
        await subs.claim("indexer", worker="w-1")
    with pytest.raises(cls) as acked:
        await subs.ack(make_claim(), done=True)
    assert created.value.status == status
    assert code in str(created.value)
    assert TOKEN not in str(acked.value)


async def test_already_claimed_keeps_holder_and_generation(
    mock: respx.MockRouter, subs: SubscriptionClient
) -> None:
    mock.post(f"{SUBS}/indexer/claim").mock(
        return_value=error(409, "ALREADY_CLAIMED", current_holder="w-2", generation=7)
    )
    with pytest.raises(AlreadyClaimedError) as caught:
        await subs.claim("indexer", worker="w-1")
    assert (caught.value.current_holder, caught.value.generation) == ("w-2", 7)


async def test_retryable_failures_are_retried_under_the_policy(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    route = mock.get(f"{SUBS}/indexer").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=subscription_doc())]
    )
    async with SubscriptionClient(ROOT, retry=RetryPolicy(max_attempts=2)) as subs:
        assert (await subs.get("indexer")).id == "indexer"
        assert route.call_count == 2
        assert len(slept) == 1
        route.side_effect = [httpx.Response(503), httpx.Response(503)]
        with pytest.raises(ServerError):
            await subs.get("indexer")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"wake_id": "w", "generation": "three", "token": TOKEN}),
        httpx.Response(200, json={**claim_doc(), "token": {"secret": TOKEN}}),
    ],
)
async def test_malformed_answers_are_parse_errors_without_values(
    mock: respx.MockRouter, subs: SubscriptionClient, answer: httpx.Response
) -> None:
    mock.post(f"{SUBS}/indexer/claim").mock(return_value=answer)
    with pytest.raises(ParseError) as caught:
        await subs.claim("indexer", worker="w-1")
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None


async def test_tokens_never_reach_errors_reprs_or_logs(
    mock: respx.MockRouter, subs: SubscriptionClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile server echoing the token in its error body.
    echoed = httpx.Response(409, json={"error": {"code": "FENCED", "message": f"stale {TOKEN}"}})
    mock.post(f"{SUBS}/indexer/ack").mock(return_value=echoed)
    mock.post(f"{SUBS}/hooked/callback").mock(
        return_value=httpx.Response(
            401, json={"error": {"code": "TOKEN_INVALID", "message": "cb-secret-xyz"}}
        )
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FencedError) as fenced:
        await subs.ack(make_claim(), [StreamAck(stream="chats/1", offset=OFFSET)])
    with pytest.raises(WakeTokenError) as refused:
        await subs.ack_callback(
            f"{SUBS}/hooked/callback", "cb-secret-xyz", wake_id="w_1", generation=1, done=True
        )
    for caught, secret in ((fenced.value, TOKEN), (refused.value, "cb-secret-xyz")):
        shown = f"{caught} {caught!r} {caught.body} {caught.headers}"
        assert secret not in shown
    assert TOKEN not in caplog.text
    assert "cb-secret-xyz" not in caplog.text
    assert TOKEN not in repr(make_claim())


def token_pieces(text: str, secret: str = TOKEN, size: int = 8) -> list[str]:
    """The pieces of ``secret`` (``size`` characters or more) that appear in ``text``."""
    return [
        secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text
    ]


def everything_shown(error: BaseException) -> str:
    """str, repr, args and attributes of ``error`` and of every exception it chains."""
    shown: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        shown += [str(current), repr(current), repr(current.args), repr(vars(current))]
        pending += [current.__cause__, current.__context__]
    return "\n".join(shown)


@pytest.mark.parametrize("cut", [20, 40, 60, 90])
async def test_a_truncated_answer_never_shows_a_piece_of_the_token(
    mock: respx.MockRouter, subs: SubscriptionClient, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    # Cut inside the token: its closing quote is gone, so it cannot be found as a JSON string.
    full = json.dumps({**claim_doc(), "token": TOKEN}, separators=(",", ":"))
    start = full.index(TOKEN)
    truncated = full[: start + min(cut, len(TOKEN) - 1)].encode()
    answer = httpx.Response(200, content=truncated, headers={"content-type": "application/json"})
    mock.post(f"{SUBS}/indexer/claim").mock(return_value=answer)
    mock.post(f"{SUBS}/indexer/ack").mock(return_value=answer)
    mock.post(f"{SUBS}/indexer/callback").mock(return_value=answer)
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    for call in (
        lambda: subs.claim("indexer", worker="w-1"),
        lambda: subs.ack(make_claim(), done=True),
        lambda: subs.ack_callback(
            f"{SUBS}/indexer/callback", "other-secret", wake_id="w_1", generation=1
        ),
    ):
        with pytest.raises(ParseError) as caught:
            await call()
        errors.append(caught.value)
        assert "not JSON" in str(caught.value)
        logging.getLogger("durable_streams.subscriptions").warning("failed: %s", caught.value)
    for caught_error in errors:
        assert token_pieces(everything_shown(caught_error)) == []
    assert token_pieces(caplog.text) == []
