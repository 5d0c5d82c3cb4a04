"""verify(): every §7 check, with keys generated here (respx serves their JWKS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from durable_streams import InvalidArgumentError, NetworkError, WebhookVerificationError
from durable_streams.subscriptions._jwks import JwksCache
from durable_streams.subscriptions._webhook import (
    WebhookNotification,
    parse_signature,
    verify,
)

from .signing import JWKS_URL, TOKEN, b64url, jwks, notification_body, signature_header

pytestmark = pytest.mark.anyio

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
NOW = 1_764_400_000
BODY = notification_body()


@pytest.fixture
def keys() -> Iterator[JwksCache]:
    with respx.mock(assert_all_called=False) as router:
        router.get(JWKS_URL).mock(
            return_value=httpx.Response(
                200, content=jwks((KEY, "k1")), headers={"cache-control": "max-age=300"}
            )
        )
        yield JwksCache(JWKS_URL)


def signed(body: bytes = BODY, t: int | str = NOW, kid: str = "k1") -> dict[str, str]:
    return {"Webhook-Signature": signature_header(KEY, kid, t, body)}


async def check(headers: Any, body: bytes, keys: JwksCache, **options: Any) -> WebhookNotification:
    return await verify(
        headers, body, subscription_id="orders", keys=keys, now=options.pop("now", NOW), **options
    )


async def rejected(headers: Any, body: bytes, keys: JwksCache, **options: Any) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        await check(headers, body, keys, **options)
    error = caught.value
    assert error.code == "WEBHOOK_REJECTED"
    assert error.status is None
    assert_nothing_secret(error, headers, body)
    return error.reason


def assert_nothing_secret(error: BaseException, headers: Any, body: bytes) -> None:
    """Neither the token, the signature nor the body shows anywhere in the error's chain."""
    values = headers.values() if isinstance(headers, dict) else [v for _, v in headers]
    secrets = [TOKEN, body.decode("utf-8", "replace")]
    for value in values:
        text = value.decode() if isinstance(value, bytes) else value
        secrets += [part.partition("=")[2] for part in text.split(",") if "ed25519=" in part]
    seen: BaseException | None = error
    while seen is not None:
        for secret in filter(None, secrets):
            assert secret not in str(seen)
            assert secret not in repr(seen)
            assert secret not in repr(seen.args)
        seen = seen.__cause__ or seen.__context__


async def test_a_valid_webhook_returns_its_notification(keys: JwksCache) -> None:
    wake = await check(signed(), BODY, keys)
    assert wake.subscription_id == "orders"
    assert wake.wake_id == "w_0123456789abcdef01234567"
    assert wake.generation == 3
    assert wake.callback_url.endswith("/subscriptions/orders/callback")
    assert wake.callback_token.get_secret_value() == TOKEN
    [stream] = wake.streams
    assert stream.path == "orders/eu"
    assert stream.acked_offset == "0000000000000000_0000000000000005"
    assert stream.tail_offset == "0000000000000000_0000000000000009"
    assert stream.has_pending is True
    for text in (repr(wake), str(wake), wake.model_dump_json(), repr(wake.model_dump())):
        assert TOKEN not in text


async def test_headers_may_be_a_mapping_in_any_case_or_asgi_pairs(keys: JwksCache) -> None:
    value = signed()["Webhook-Signature"]
    await check({"webhook-signature": value}, BODY, keys)
    await check({"WEBHOOK-SIGNATURE": value}, BODY, keys)
    await check(httpx.Headers({"Webhook-Signature": value}), BODY, keys)
    await check([(b"content-type", b"x"), (b"webhook-signature", value.encode())], BODY, keys)


async def test_forged_with_another_key_is_a_signature_failure(keys: JwksCache) -> None:
    forged = {"Webhook-Signature": signature_header(OTHER, "k1", NOW, BODY)}
    assert await rejected(forged, BODY, keys) == "signature"


async def test_tampered_body_is_a_signature_failure(keys: JwksCache) -> None:
    tampered = BODY.replace(b'"generation": 3', b'"generation": 4')
    assert tampered != BODY
    assert await rejected(signed(), tampered, keys) == "signature"
    assert await rejected(signed(), BODY + b" ", keys) == "signature"


async def test_tampered_timestamp_is_a_signature_failure(keys: JwksCache) -> None:
    header = signed()["Webhook-Signature"].replace(f"t={NOW}", f"t={NOW + 1}")
    assert await rejected({"Webhook-Signature": header}, BODY, keys) == "signature"


@pytest.mark.parametrize("offset", [-301, 301, -(10**6)])
async def test_replayed_or_future_timestamps_are_refused(keys: JwksCache, offset: int) -> None:
    assert await rejected(signed(t=NOW + offset), BODY, keys) == "timestamp"


@pytest.mark.parametrize("offset", [-300, 300])
async def test_timestamps_at_the_tolerance_are_accepted(keys: JwksCache, offset: int) -> None:
    await check(signed(t=NOW + offset), BODY, keys)


async def test_tolerance_is_configurable(keys: JwksCache) -> None:
    assert await rejected(signed(t=NOW - 61), BODY, keys, tolerance=60) == "timestamp"
    with pytest.raises(InvalidArgumentError):
        await check(signed(), BODY, keys, tolerance=-1)


async def test_the_clock_defaults_to_now(keys: JwksCache) -> None:
    assert await rejected(signed(t=NOW - 10**6), BODY, keys, now=None) == "timestamp"


async def test_unknown_kid_is_refused(keys: JwksCache) -> None:
    header = {"Webhook-Signature": signature_header(OTHER, "k9", NOW, BODY)}
    assert await rejected(header, BODY, keys) == "unknown_key"


async def test_another_subscriptions_notification_is_refused(keys: JwksCache) -> None:
    body = notification_body("payments")
    assert await rejected(signed(body), body, keys) == "subscription"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"subscription_id": "orders"}).encode(),
        notification_body(generation="3"),
        notification_body(generation=-1),
        notification_body(streams=[{"path": "a"}]),
    ],
)
async def test_signed_bodies_that_are_not_notifications_are_malformed(
    keys: JwksCache, body: bytes
) -> None:
    assert await rejected(signed(body), body, keys) == "malformed"


async def test_oversized_body_is_refused_before_anything_else(keys: JwksCache) -> None:
    body = notification_body(description="x" * 2000)
    assert await rejected(signed(body), body, keys, max_body_bytes=1000) == "malformed"


def good_parts() -> tuple[str, str, str]:
    t, kid, sig = signed()["Webhook-Signature"].split(",")
    return t, kid, sig


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=1,kid=k1",  # no signature
        "{t},{kid}",
        "{kid},{sig}",  # no timestamp
        "{t},{sig}",  # no kid
        "{t},{t},{kid},{sig}",  # repeated part
        "{t},{kid},{sig},v1=abc",  # unknown part
        "{t}, {kid}, {sig}",  # spaces inside
        "t=-5,{kid},{sig}",
        "t=1e9,{kid},{sig}",
        "t=+1764400000,{kid},{sig}",
        "t=,{kid},{sig}",
        "t=1234567890123,{kid},{sig}",  # 13 digits: not a unix time in seconds
        "{t},kid=,{sig}",
        "{t},kid=k 1,{sig}",
        "{t},kid={long_kid},{sig}",
        "{t},{kid},{sig}==",  # padded base64
        "{t},{kid},{sig_std}",  # standard (not url-safe) alphabet
        "{t},{kid},ed25519={short}",  # wrong signature length
        "{t},{kid},ed25519=",
        "{t},{kid},{sig_noncanonical}",
        "{t},{kid},{sig}" + ",x" * 400,  # too long
    ],
)
async def test_malformed_signature_headers_are_refused(keys: JwksCache, header: str) -> None:
    t, kid, sig = good_parts()
    raw = sig.partition("=")[2]
    std = raw.replace("-", "+").replace("_", "/")
    if std == raw:  # make sure the alphabet differs
        std = "+" + raw[1:]
    filled = header.format(
        t=t,
        kid=kid,
        sig=sig,
        long_kid="k" * 129,
        sig_std="ed25519=" + std,
        short=b64url(b"\x01" * 63),
        # The last character of 64 bytes in base64url carries 4 unused bits (A, Q, g or w
        # when they are zero): the next letter decodes to the same bytes, non-canonically.
        sig_noncanonical="ed25519=" + raw[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}[raw[-1]],
    )
    assert await rejected({"Webhook-Signature": filled}, BODY, keys) == "malformed"


async def test_missing_or_repeated_header_is_malformed(keys: JwksCache) -> None:
    value = signed()["Webhook-Signature"].encode()
    assert await rejected({}, BODY, keys) == "malformed"
    pairs = [(b"webhook-signature", value), (b"Webhook-Signature", value)]
    assert await rejected(pairs, BODY, keys) == "malformed"


def test_parse_signature_returns_the_parts() -> None:
    t, kid, signature = parse_signature(signed()["Webhook-Signature"])
    assert (t, kid, len(signature)) == (str(NOW), "k1", 64)


async def test_unreachable_keys_raise_the_fetch_error_not_a_rejection() -> None:
    with respx.mock() as router:
        router.get(JWKS_URL).mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(NetworkError):
            await check(signed(), BODY, JwksCache(JWKS_URL))


async def test_the_signature_is_checked_before_the_body_is_parsed(keys: JwksCache) -> None:
    # A body that would fail to parse, under a bad signature: the signature is reported.
    forged = {"Webhook-Signature": signature_header(OTHER, "k1", NOW, b"not json")}
    assert await rejected(forged, b"not json", keys) == "signature"
