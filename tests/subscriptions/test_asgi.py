"""WebhookReceiver as an ASGI app (httpx's ASGI transport; respx serves the JWKS)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from durable_streams import InvalidArgumentError, RetryPolicy
from durable_streams.subscriptions import (
    JwksCache,
    SubscriptionClient,
    WakeReply,
    WebhookNotification,
    WebhookReceiver,
)

from .signing import JWKS_URL, TOKEN, jwks, notification_body, signature_header

pytestmark = pytest.mark.anyio

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
BODY = notification_body()
CALLBACK_URL = json.loads(BODY)["callback_url"]
ROOT = JWKS_URL.removesuffix("/__ds/jwks.json")


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def jwks_route(router: respx.MockRouter) -> respx.Route:
    return router.get(JWKS_URL).mock(return_value=httpx.Response(200, content=jwks((KEY, "k1"))))


@pytest.fixture
def callback(router: respx.MockRouter) -> respx.Route:
    """The wake's callback URL on the server: acks applied (next_wake false)."""
    return router.post(CALLBACK_URL).mock(
        return_value=httpx.Response(200, json={"ok": True, "next_wake": False})
    )


def subscriptions() -> SubscriptionClient:
    return SubscriptionClient(ROOT, retry=RetryPolicy.disabled())


def receiver_for(handler: Any, **options: Any) -> WebhookReceiver:
    return WebhookReceiver(
        handler,
        subscriptions=subscriptions(),
        subscription_id="orders",
        keys=JwksCache(JWKS_URL),
        **options,
    )


class Recorder:
    def __init__(self, reply: Any = None, fail: bool = False) -> None:
        self.reply = reply
        self.fail = fail
        self.wakes: list[WebhookNotification] = []

    async def __call__(self, wake: WebhookNotification) -> Any:
        self.wakes.append(wake)
        if self.fail:
            raise RuntimeError("handler broke")
        return self.reply


@pytest.fixture
async def post(jwks_route: respx.Route, callback: respx.Route) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    async def send(
        handler: Recorder, body: bytes = BODY, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        receiver = receiver_for(handler)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=receiver), base_url="http://receiver"
        )
        clients.append(client)
        if headers is None:
            headers = {"webhook-signature": signature_header(KEY, "k1", int(time.time()), body)}
        return await client.post("/hook", content=body, headers=headers)

    yield send
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize("reply", [None, WakeReply.DONE])
async def test_done_acks_the_tails_through_the_fenced_callback_never_the_reply(
    post: Any, callback: respx.Route, reply: WakeReply | None
) -> None:
    handler = Recorder(reply)
    response = await post(handler)
    assert response.status_code == 200
    # Never {"done": true}: the server would apply it to whatever wake it holds by then.
    assert response.json() == {"done": False}
    assert response.headers["content-type"] == "application/json"
    [wake] = handler.wakes
    assert wake.subscription_id == "orders"
    assert wake.callback_token.get_secret_value() == TOKEN
    [call] = callback.calls
    assert call.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(call.request.content) == {
        "wake_id": wake.wake_id,
        "generation": 3,
        "acks": [{"stream": "orders/eu", "offset": "0000000000000000_0000000000000009"}],
        "done": True,
    }


async def test_a_fenced_done_ack_answers_not_done_and_warns(
    post: Any, callback: respx.Route, caplog: pytest.LogCaptureFixture
) -> None:
    # A handler that outlived its lease: a newer wake owns the work, this one acks nothing.
    callback.mock(
        return_value=httpx.Response(409, json={"error": {"code": "FENCED", "message": "stale"}})
    )
    with caplog.at_level(logging.WARNING, logger="durable_streams.subscriptions"):
        response = await post(Recorder(WakeReply.DONE))
    assert response.status_code == 200
    assert response.json() == {"done": False}
    assert "taken over by a newer wake" in caplog.text
    assert TOKEN not in caplog.text


async def test_a_failed_done_ack_is_a_503_so_the_server_delivers_again(
    post: Any, callback: respx.Route, caplog: pytest.LogCaptureFixture
) -> None:
    callback.mock(return_value=httpx.Response(500))
    with caplog.at_level(logging.WARNING, logger="durable_streams.subscriptions"):
        response = await post(Recorder(WakeReply.DONE))
    assert response.status_code == 503
    assert response.json() == {"error": {"code": "ACK_FAILED"}}
    assert "will deliver it again" in caplog.text
    assert TOKEN not in caplog.text


async def test_callback_reply_is_not_done_and_acks_nothing(
    post: Any, callback: respx.Route
) -> None:
    response = await post(Recorder(WakeReply.CALLBACK))
    assert response.status_code == 200
    assert response.json() == {"done": False}
    assert not callback.calls


async def test_rejected_webhooks_get_401_with_the_reason_and_nothing_echoed(
    post: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    signature = signature_header(OTHER, "k1", int(time.time()), BODY)
    with caplog.at_level(logging.WARNING, logger="durable_streams.subscriptions"):
        response = await post(handler, headers={"webhook-signature": signature})
    assert response.status_code == 401
    # The code and the reason only: the message (key ids, the JWKS URL) stays in the log.
    assert response.json() == {"error": {"code": "WEBHOOK_REJECTED", "reason": "signature"}}
    assert handler.wakes == []
    signature_value = signature.rpartition("ed25519=")[2]
    for text in (response.text, caplog.text):
        assert TOKEN not in text
        assert signature_value not in text
        assert "callback" not in text
    assert "webhook rejected (signature)" in caplog.text


async def test_replayed_webhook_is_rejected(post: Any) -> None:
    old = signature_header(KEY, "k1", int(time.time()) - 3600, BODY)
    response = await post(Recorder(), headers={"webhook-signature": old})
    assert response.status_code == 401
    assert response.json()["error"]["reason"] == "timestamp"


async def test_handler_failure_is_a_500_so_the_server_retries(
    post: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="durable_streams.subscriptions"):
        response = await post(Recorder(fail=True))
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "HANDLER_FAILED"}}
    assert "handler broke" in caplog.text  # the traceback is logged for the application
    assert TOKEN not in caplog.text


async def test_handler_returning_something_else_is_a_500(post: Any) -> None:
    response = await post(Recorder({"done": True}))
    assert response.status_code == 500


async def test_unreachable_keys_are_a_503(post: Any, jwks_route: respx.Route) -> None:
    jwks_route.mock(side_effect=httpx.ConnectError("refused"))
    handler = Recorder()
    response = await post(handler)
    assert response.status_code == 503
    assert handler.wakes == []


async def test_unknown_keys_are_refused_without_naming_them(
    post: Any, caplog: pytest.LogCaptureFixture
) -> None:
    signature = signature_header(KEY, "k-unknown", int(time.time()), BODY)
    with caplog.at_level(logging.WARNING, logger="durable_streams.subscriptions"):
        response = await post(Recorder(), headers={"webhook-signature": signature})
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "WEBHOOK_REJECTED", "reason": "unknown_key"}}
    assert "k-unknown" not in response.text
    assert JWKS_URL not in response.text
    assert "k-unknown" in caplog.text  # the details are for the operator's log


async def test_only_post_is_allowed(jwks_route: respx.Route) -> None:
    receiver = receiver_for(Recorder())
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        response = await client.get("/hook")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_oversized_bodies_are_refused_unread(jwks_route: respx.Route) -> None:
    handler = Recorder()
    receiver = receiver_for(handler, max_body_bytes=100)
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        response = await client.post("/hook", content=BODY)
    assert response.status_code == 413
    assert handler.wakes == []
    assert jwks_route.call_count == 0


async def test_lifespan_is_answered() -> None:
    receiver = receiver_for(Recorder())
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await receiver({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize(
    "options",
    [
        {"subscription_id": ""},
        {"tolerance": -1},
        {"max_body_bytes": 0},
        {"subscriptions": "http://streams.example.com/v1/stream"},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "subscriptions": subscriptions(),
        "subscription_id": "orders",
        "keys": JwksCache(JWKS_URL),
    }
    with pytest.raises(InvalidArgumentError):
        WebhookReceiver(Recorder(), **{**arguments, **options})


def test_repr_shows_no_secrets() -> None:
    receiver = receiver_for(Recorder())
    assert repr(receiver).startswith("WebhookReceiver(subscription_id='orders'")
