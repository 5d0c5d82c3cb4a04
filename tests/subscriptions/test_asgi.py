"""WebhookReceiver as an ASGI app (httpx's ASGI transport; respx serves the JWKS)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from durable_streams import InvalidArgumentError
from durable_streams.subscriptions import (
    JwksCache,
    WakeReply,
    WebhookNotification,
    WebhookReceiver,
)

from .signing import JWKS_URL, TOKEN, jwks, notification_body, signature_header

pytestmark = pytest.mark.anyio

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
BODY = notification_body()


@pytest.fixture
def jwks_route() -> Iterator[respx.Route]:
    with respx.mock(assert_all_called=False) as router:
        yield router.get(JWKS_URL).mock(return_value=httpx.Response(200, content=jwks((KEY, "k1"))))


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
async def post(jwks_route: respx.Route) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    async def send(
        handler: Recorder, body: bytes = BODY, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        receiver = WebhookReceiver(handler, subscription_id="orders", keys=JwksCache(JWKS_URL))
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


async def test_returning_nothing_acks_with_done(post: Any) -> None:
    handler = Recorder()
    response = await post(handler)
    assert response.status_code == 200
    assert response.json() == {"done": True}
    assert response.headers["content-type"] == "application/json"
    [wake] = handler.wakes
    assert wake.subscription_id == "orders"
    assert wake.callback_token.get_secret_value() == TOKEN


async def test_done_reply_acks_with_done(post: Any) -> None:
    response = await post(Recorder(WakeReply.DONE))
    assert response.json() == {"done": True}


async def test_callback_reply_is_not_done(post: Any) -> None:
    response = await post(Recorder(WakeReply.CALLBACK))
    assert response.status_code == 200
    assert response.json() == {"done": False}


async def test_rejected_webhooks_get_401_with_the_reason_and_nothing_echoed(
    post: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    signature = signature_header(OTHER, "k1", int(time.time()), BODY)
    with caplog.at_level(logging.WARNING, logger="durable_streams.subscriptions"):
        response = await post(handler, headers={"webhook-signature": signature})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "WEBHOOK_REJECTED"
    assert error["reason"] == "signature"
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


async def test_only_post_is_allowed(jwks_route: respx.Route) -> None:
    receiver = WebhookReceiver(Recorder(), subscription_id="orders", keys=JwksCache(JWKS_URL))
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        response = await client.get("/hook")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_oversized_bodies_are_refused_unread(jwks_route: respx.Route) -> None:
    handler = Recorder()
    receiver = WebhookReceiver(
        handler, subscription_id="orders", keys=JwksCache(JWKS_URL), max_body_bytes=100
    )
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        response = await client.post("/hook", content=BODY)
    assert response.status_code == 413
    assert handler.wakes == []
    assert jwks_route.call_count == 0


async def test_lifespan_is_answered() -> None:
    receiver = WebhookReceiver(Recorder(), subscription_id="orders", keys=JwksCache(JWKS_URL))
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
    [{"subscription_id": ""}, {"tolerance": -1}, {"max_body_bytes": 0}],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"subscription_id": "orders", "keys": JwksCache(JWKS_URL)}
    with pytest.raises(InvalidArgumentError):
        WebhookReceiver(Recorder(), **{**arguments, **options})


def test_repr_shows_no_secrets() -> None:
    receiver = WebhookReceiver(Recorder(), subscription_id="orders", keys=JwksCache(JWKS_URL))
    assert repr(receiver).startswith("WebhookReceiver(subscription_id='orders'")
