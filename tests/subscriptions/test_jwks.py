"""JwksCache (respx plays the server): caching per max-age, refetch rules, bad documents."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from durable_streams import (
    InvalidArgumentError,
    NetworkError,
    ParseError,
    ServerError,
    StatusError,
    WebhookVerificationError,
)
from durable_streams.subscriptions._jwks import JwksCache, decode_base64url, parse_jwks

from .signing import JWKS_URL, b64url, jwks, public_jwk

pytestmark = pytest.mark.anyio

KEY = Ed25519PrivateKey.generate()
ROTATED = Ed25519PrivateKey.generate()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def reply(body: bytes, cache_control: str | None = "public, max-age=300") -> httpx.Response:
    headers = {"content-type": "application/jwk-set+json"}
    if cache_control is not None:
        headers["cache-control"] = cache_control
    return httpx.Response(200, content=body, headers=headers)


def raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


async def test_key_is_fetched_once_and_cached_for_max_age(
    mock: respx.MockRouter, clock: Clock
) -> None:
    route = mock.get(JWKS_URL).mock(return_value=reply(jwks((KEY, "k1")), "public, max-age=120"))
    keys = JwksCache(JWKS_URL, clock=clock)
    assert raw(await keys.key("k1")) == raw(KEY)
    clock.now += 119
    await keys.key("k1")
    assert route.call_count == 1
    assert route.calls[0].request.headers["accept"] == "application/jwk-set+json"
    clock.now += 1  # max-age reached: the next use refetches
    await keys.key("k1")
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("cache_control", "kept"),
    [
        (None, 300.0),  # no header: the default
        ("public", 300.0),  # no max-age: the default
        ("public, max-age=999999", 3600.0),  # capped
        ("max-age=0", 30.0),  # floored at the refetch interval
        ("no-store", 30.0),
        ("public, s-maxage=5, max-age=600", 600.0),  # s-maxage is for shared caches
    ],
)
async def test_cache_life_follows_cache_control_within_bounds(
    mock: respx.MockRouter, clock: Clock, cache_control: str | None, kept: float
) -> None:
    route = mock.get(JWKS_URL).mock(return_value=reply(jwks((KEY, "k1")), cache_control))
    keys = JwksCache(JWKS_URL, clock=clock)
    await keys.key("k1")
    clock.now += kept - 0.5
    await keys.key("k1")
    assert route.call_count == 1
    clock.now += 0.5
    await keys.key("k1")
    assert route.call_count == 2


async def test_unknown_kid_refetches_once_and_finds_a_rotated_key(
    mock: respx.MockRouter, clock: Clock
) -> None:
    route = mock.get(JWKS_URL).mock(
        side_effect=[reply(jwks((KEY, "k1"))), reply(jwks((KEY, "k1"), (ROTATED, "k2")))]
    )
    keys = JwksCache(JWKS_URL, clock=clock)
    await keys.key("k1")
    clock.now += 31
    assert raw(await keys.key("k2")) == raw(ROTATED)
    assert route.call_count == 2
    await keys.key("k2")  # cached now
    assert route.call_count == 2


async def test_first_fetch_counts_as_the_one_refetch_of_its_call(
    mock: respx.MockRouter, clock: Clock
) -> None:
    route = mock.get(JWKS_URL).mock(return_value=reply(jwks((KEY, "k1"))))
    keys = JwksCache(JWKS_URL, clock=clock)
    with pytest.raises(WebhookVerificationError) as caught:
        await keys.key("nope")
    assert caught.value.reason == "unknown_key"
    assert caught.value.code == "WEBHOOK_REJECTED"
    assert route.call_count == 1


async def test_refetches_for_unknown_kids_are_rate_limited(
    mock: respx.MockRouter, clock: Clock
) -> None:
    route = mock.get(JWKS_URL).mock(return_value=reply(jwks((KEY, "k1"))))
    keys = JwksCache(JWKS_URL, clock=clock, min_refetch_interval=30)
    await keys.key("k1")
    for attempt in range(50):  # forged kids, within 30 s of the first fetch
        clock.now += 0.5
        with pytest.raises(WebhookVerificationError):
            await keys.key(f"forged-{attempt}")
    assert route.call_count == 1
    clock.now += 5.1  # 30.1 s since the fetch: one more refetch is allowed
    with pytest.raises(WebhookVerificationError):
        await keys.key("forged-again")
    with pytest.raises(WebhookVerificationError):
        await keys.key("forged-once-more")
    assert route.call_count == 2
    assert raw(await keys.key("k1")) == raw(KEY)  # known kids never wait
    assert route.call_count == 2


async def test_concurrent_verifications_share_one_fetch(
    mock: respx.MockRouter, clock: Clock
) -> None:
    release = anyio.Event()
    calls = 0

    async def slow_server(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await release.wait()
        return reply(jwks((KEY, "k1")))

    mock.get(JWKS_URL).mock(side_effect=slow_server)
    keys = JwksCache(JWKS_URL, clock=clock)
    found: list[bytes] = []
    unknown: list[str] = []

    async def lookup(kid: str) -> None:
        try:
            found.append(raw(await keys.key(kid)))
        except WebhookVerificationError as exc:
            unknown.append(exc.reason)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for index in range(10):
                tg.start_soon(lookup, "k1" if index % 2 == 0 else f"forged-{index}")
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert calls == 1
    assert found == [raw(KEY)] * 5
    assert unknown == ["unknown_key"] * 5


async def test_failed_fetch_is_typed_and_not_retried_before_the_interval(
    mock: respx.MockRouter, clock: Clock
) -> None:
    route = mock.get(JWKS_URL).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(503, text="busy"),
            reply(jwks((KEY, "k1"))),
        ]
    )
    keys = JwksCache(JWKS_URL, clock=clock)
    with pytest.raises(NetworkError):
        await keys.key("k1")
    clock.now += 29
    with pytest.raises(NetworkError):  # the same outcome, without asking the server
        await keys.key("k1")
    assert route.call_count == 1
    clock.now += 1
    with pytest.raises(ServerError) as caught:
        await keys.key("k1")
    assert caught.value.status == 503
    clock.now += 30
    assert raw(await keys.key("k1")) == raw(KEY)
    assert route.call_count == 3


async def test_a_cancelled_fetch_does_not_count(mock: respx.MockRouter, clock: Clock) -> None:
    never = anyio.Event()
    calls = 0

    async def server(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await never.wait()  # the first fetch hangs until its caller gives up
        return reply(jwks((KEY, "k1")))

    mock.get(JWKS_URL).mock(side_effect=server)
    keys = JwksCache(JWKS_URL, clock=clock)
    with anyio.move_on_after(0.05) as scope:
        await keys.key("k1")
    assert scope.cancelled_caught
    assert raw(await keys.key("k1")) == raw(KEY)  # at once: not rate-limited by the first
    assert calls == 2


async def test_a_repeated_failure_keeps_a_short_traceback(
    mock: respx.MockRouter, clock: Clock
) -> None:
    mock.get(JWKS_URL).mock(side_effect=httpx.ConnectError("refused"))
    keys = JwksCache(JWKS_URL, clock=clock)
    depths = []
    for _ in range(20):
        with pytest.raises(NetworkError) as caught:
            await keys.key("k1")
        depths.append(len(caught.traceback))
    assert depths[-1] == depths[1]  # raised again, not grown each time


async def test_own_client_is_used_and_left_open(mock: respx.MockRouter, clock: Clock) -> None:
    mock.get(JWKS_URL).mock(return_value=reply(jwks((KEY, "k1"))))
    async with httpx.AsyncClient() as client:
        keys = JwksCache(JWKS_URL, client=client, clock=clock)
        await keys.key("k1")
        assert not client.is_closed


async def test_redirects_are_not_followed(mock: respx.MockRouter, clock: Clock) -> None:
    mock.get(JWKS_URL).mock(
        return_value=httpx.Response(302, headers={"location": "https://evil.example/jwks"})
    )
    evil = mock.get("https://evil.example/jwks").mock(return_value=reply(jwks((KEY, "k1"))))
    with pytest.raises(StatusError) as caught:
        await JwksCache(JWKS_URL, clock=clock).key("k1")
    assert caught.value.status == 302
    assert evil.call_count == 0


def document(*entries: Any) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


GOOD = public_jwk(KEY, "k1")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", '"keys" array'),
        (b'{"keys": {}}', '"keys" array'),
        (document("k1"), "not an object"),
        (document({**GOOD, "x": GOOD["x"] + "="}), "base64url of 32 bytes"),
        (document({**GOOD, "x": b64url(b"\x01" * 31)}), "base64url of 32 bytes"),
        (document({**GOOD, "x": 12}), "base64url of 32 bytes"),
        (document({**GOOD, "kid": ""}), "kid"),
        (document({**GOOD, "kid": 7}), "kid"),
        (document({**GOOD, "d": GOOD["x"]}), "private key"),
        (document({**GOOD, "use": "enc"}), "use"),
        (document({**GOOD, "alg": "RS256"}), "alg"),
        (document(GOOD, {**GOOD}), "duplicate kid"),
        (document(*[{**GOOD, "kid": f"k{n}"} for n in range(65)]), "more than 64 keys"),
    ],
)
def test_bad_documents_are_parse_errors(body: bytes, problem: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_jwks(body, where=JWKS_URL)
    assert JWKS_URL in str(caught.value)
    assert problem in str(caught.value)


def test_other_key_types_are_skipped() -> None:
    rsa = {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"}
    x25519 = {"kty": "OKP", "crv": "X25519", "kid": "x1", "x": GOOD["x"]}
    keys = parse_jwks(document(rsa, x25519, GOOD), where=JWKS_URL)
    assert list(keys) == ["k1"]


async def test_oversized_document_is_refused(mock: respx.MockRouter, clock: Clock) -> None:
    padding = {"kty": "RSA", "kid": "r", "n": "A" * 70_000}
    mock.get(JWKS_URL).mock(return_value=reply(document(padding, GOOD)))
    with pytest.raises(ParseError) as caught:
        await JwksCache(JWKS_URL, clock=clock).key("k1")
    assert "larger than 65536 bytes" in str(caught.value)


def test_base64url_is_strict() -> None:
    value = b64url(b"\xff" * 32)
    assert decode_base64url(value, 32) == b"\xff" * 32
    assert decode_base64url(value + "=", 32) is None  # padded
    assert decode_base64url(value.replace("_", "/"), 32) is None  # standard alphabet
    assert decode_base64url(value[:-1] + "9", 32) is None  # unused bits set: not canonical
    assert decode_base64url(value[:-1], 32) is None  # short
    assert decode_base64url(" " + value[1:], 32) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://example.com/jwks"},
        {"url": "not a url"},
        {"url": JWKS_URL, "min_refetch_interval": 400},
        {"url": JWKS_URL, "max_bytes": 0},
        {"url": JWKS_URL, "max_stale": -1},
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        JwksCache(**kwargs)


def test_repr_names_the_url_without_credentials() -> None:
    keys = JwksCache("https://user:secret@streams.example.com/jwks.json")
    assert "secret" not in repr(keys)
    assert "secret" not in keys.url


def test_subscriptions_work_without_cryptography_until_webhooks_are_verified() -> None:
    program = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from durable_streams.subscriptions import JwksCache, SubscriptionClient\n"
        "SubscriptionClient('http://127.0.0.1:1/v1/stream')\n"
        "try:\n"
        "    JwksCache('https://example.com/jwks.json')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip install 'aio-durable-streams[webhooks]'" in done.stdout


async def test_expired_keys_verify_while_refetches_fail_for_a_bounded_time(
    mock: respx.MockRouter, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    route = mock.get(JWKS_URL).mock(
        side_effect=[reply(jwks((KEY, "k1")), "max-age=300")]
        + [httpx.Response(503, text="busy")] * 10
    )
    keys = JwksCache(JWKS_URL, clock=clock, max_stale=3600)
    fetched_at = clock.now
    await keys.key("k1")
    caplog.set_level(logging.WARNING, logger="durable_streams.subscriptions")
    clock.now += 300  # expired; the refetch fails: the known key still verifies
    assert raw(await keys.key("k1")) == raw(KEY)
    assert route.call_count == 2
    assert len(caplog.records) == 1
    assert "using the keys fetched 300 s ago" in caplog.text
    clock.now += 10  # within the refetch interval: no fetch, no second warning
    assert raw(await keys.key("k1")) == raw(KEY)
    assert (route.call_count, len(caplog.records)) == (2, 1)
    with pytest.raises(ServerError):  # an unknown kid has nothing to fall back on
        await keys.key("k2")
    clock.now += 30
    assert raw(await keys.key("k1")) == raw(KEY)  # refetched, failed again: warned again
    assert (route.call_count, len(caplog.records)) == (3, 2)
    clock.now = fetched_at + 3601  # too stale: the failure is raised
    with pytest.raises(ServerError):
        await keys.key("k1")


async def test_stale_keys_can_be_turned_off(mock: respx.MockRouter, clock: Clock) -> None:
    mock.get(JWKS_URL).mock(side_effect=[reply(jwks((KEY, "k1"))), httpx.ConnectError("down")])
    keys = JwksCache(JWKS_URL, clock=clock, max_stale=0)
    await keys.key("k1")
    clock.now += 300
    with pytest.raises(NetworkError):
        await keys.key("k1")
