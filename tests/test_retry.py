"""RetryPolicy validation and Backoff timing, observed without real sleeping."""

from __future__ import annotations

import logging
import math

import anyio
import pytest

import durable_streams._retry as retry_module
from durable_streams import (
    BadRequestError,
    InvalidArgumentError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    StreamClosedError,
)
from durable_streams._errors import DurableStreamError
from durable_streams._retry import call_with_retry, is_retryable

URL = "http://example.com/s?token=s3cret&offset=-1"


def rate_limited(retry_after: str | None = None) -> RateLimitedError:
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return RateLimitedError("rate limited", status=429, url=URL, headers=headers)


def server_error() -> ServerError:
    return ServerError("append failed: 500", status=500, url=URL)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(retry_module, "_sleep", fake_sleep)
    return recorded


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial_delay": -1}, "initial_delay"),
        ({"initial_delay": 0}, "initial_delay"),
        ({"max_delay": -0.5}, "max_delay"),
        ({"initial_delay": 2, "max_delay": 1}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_elapsed": 0}, "max_elapsed"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"initial_delay": math.nan}, "initial_delay"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"max_attempts": "many"}, "max_attempts"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_policies_raise_at_construction(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        RetryPolicy(**kwargs)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_policy_is_immutable_and_has_sane_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts is not None
    assert policy.max_attempts > 1
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        policy.max_attempts = 3  # type: ignore[misc]
    assert RetryPolicy.disabled().max_attempts == 1


# -- what is retryable -----------------------------------------------------------------------


def test_only_transport_errors_5xx_and_429_are_retryable() -> None:
    assert is_retryable(NetworkError("reset"))
    assert is_retryable(server_error())
    assert is_retryable(rate_limited())
    for error in (
        BadRequestError("x", status=400),
        NotFoundError("x", status=404),
        StreamClosedError("x", status=409),
        DurableStreamError("x"),
        ValueError("x"),
    ):
        assert not is_retryable(error)


# -- delays ----------------------------------------------------------------------------------


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    policy = RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=1.0, max_attempts=None)
    seen_low = seen_high = False
    for _ in range(200):
        backoff = policy.backoff()
        for attempt in range(8):
            bound = min(1.0, 0.1 * 2**attempt)
            delay = backoff.next_delay(server_error())
            assert delay is not None
            assert 0 <= delay <= bound
            seen_low = seen_low or delay < bound / 4
            seen_high = seen_high or delay > bound * 3 / 4
    assert seen_low
    assert seen_high  # jitter spans the range


def test_retry_after_is_a_floor_and_one_beyond_max_retry_after_gives_up() -> None:
    backoff = RetryPolicy(initial_delay=0.01, max_delay=0.02, max_retry_after=10).backoff()
    assert backoff.next_delay(rate_limited("3")) == 3.0
    # Waiting less than asked would be refused again; waiting as asked is too long.
    assert backoff.next_delay(rate_limited("3600")) is None
    delay = backoff.next_delay(rate_limited())
    assert delay is not None
    assert delay <= 0.02


def test_attempt_limit_counts_the_first_attempt() -> None:
    backoff = RetryPolicy(max_attempts=3).backoff()
    assert backoff.next_delay(server_error()) is not None
    assert backoff.next_delay(server_error()) is not None
    assert backoff.next_delay(server_error()) is None
    assert backoff.attempts == 2
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay(server_error()) is not None


def test_non_retryable_errors_give_up_at_once() -> None:
    assert RetryPolicy().backoff().next_delay(NotFoundError("x", status=404)) is None


def test_max_elapsed_counts_from_the_first_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("durable_streams._retry.time.monotonic", lambda: clock[0])
    policy = RetryPolicy(
        initial_delay=1, max_delay=1, multiplier=1, max_attempts=None, max_elapsed=10
    )
    backoff = policy.backoff(started_at=995.0)  # the first attempt began 5 s ago
    clock[0] = 1003.0
    assert backoff.next_delay(server_error()) is not None  # 8 s + at most 1 s < 10 s
    clock[0] = 1009.5
    assert backoff.next_delay(server_error()) is None  # the retry would start past 10 s
    # A Retry-After floor that lands past the deadline also gives up.
    fresh = policy.backoff()
    assert fresh.next_delay(rate_limited("30")) is None


# -- the retry loop --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_call_with_retry_retries_then_succeeds(slept: list[float]) -> None:
    failures = [rate_limited("2"), server_error()]

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert await call_with_retry(RetryPolicy(), flaky, what="test") == "ok"
    assert len(slept) == 2
    assert slept[0] >= 2


@pytest.mark.anyio
async def test_call_with_retry_gives_up_with_the_last_error(slept: list[float]) -> None:
    calls = 0

    async def always() -> None:
        nonlocal calls
        calls += 1
        raise server_error()

    with pytest.raises(ServerError):
        await call_with_retry(RetryPolicy(max_attempts=5), always, what="test")
    assert calls == 5
    assert len(slept) == 4


@pytest.mark.anyio
async def test_call_with_retry_does_not_retry_client_errors(slept: list[float]) -> None:
    calls = 0

    async def missing() -> None:
        nonlocal calls
        calls += 1
        raise NotFoundError("x", status=404)

    with pytest.raises(NotFoundError):
        await call_with_retry(RetryPolicy(), missing, what="test")
    assert calls == 1
    assert slept == []


@pytest.mark.anyio
async def test_backoff_sleep_is_cancellable() -> None:
    # The real sleep: a cancelled scope interrupts a 60 s Retry-After wait at once.
    backoff = RetryPolicy(max_retry_after=60).backoff()
    with anyio.fail_after(5), anyio.CancelScope() as scope:
        scope.cancel()
        await backoff.sleep_before_retry(rate_limited("60"), "test")
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_each_retry_is_logged_at_debug(
    slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    attempts = [server_error(), server_error()]

    async def flaky() -> None:
        if attempts:
            raise attempts.pop()

    with caplog.at_level(logging.DEBUG, logger="durable_streams"):
        await call_with_retry(RetryPolicy(), flaky, what="head http://example.com/s")
    records = [r for r in caplog.records if r.name == "durable_streams"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG]
    assert "retrying head http://example.com/s" in records[0].getMessage()
    assert "attempt 2 failed" in records[1].getMessage()
