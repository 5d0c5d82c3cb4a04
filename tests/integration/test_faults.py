"""Retries against the reference server's fault injection (no real sleeping).

Every retryable operation recovers from injected 500, 503, 429 (+ Retry-After)
and dropped connections; a plain append retries only when the failure proves
nothing was stored, and otherwise raises AppendOutcomeUnknownError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

import durable_streams._retry
from durable_streams import (
    AppendOutcomeUnknownError,
    ForbiddenError,
    NetworkError,
    NotSupportedError,
    PayloadTooLargeError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    StatusError,
    StreamHandle,
    UnauthorizedError,
)
from tests.server.harness import ReferenceServer

pytestmark = pytest.mark.anyio

FAULTS: dict[str, dict[str, Any]] = {
    "500": {"status": 500},
    "503": {"status": 503},
    "429": {"status": 429, "retryAfter": 2},
    "drop": {"dropConnection": True},
}


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays, recorded instead of slept."""
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(durable_streams._retry, "_sleep", fake_sleep)
    return recorded


@pytest.fixture
async def handle(stream_url: str, faults: ReferenceServer) -> AsyncIterator[StreamHandle]:
    async with StreamHandle(stream_url, retry=RetryPolicy(max_attempts=4)) as h:
        await h.create(content_type="text/plain")
        yield h


async def _tail(handle: StreamHandle) -> str | None:
    return (await handle.head()).next_offset


Operation = Callable[[StreamHandle], Awaitable[object]]

SAFE_OPERATIONS: dict[str, tuple[str, Operation]] = {
    "create": ("PUT", lambda h: h.create(content_type="text/plain")),
    "head": ("HEAD", lambda h: h.head()),
    "exists": ("HEAD", lambda h: h.exists()),
    "close": ("POST", lambda h: h.close()),
    "delete": ("DELETE", lambda h: h.delete()),
    "append-with-seq": ("POST", lambda h: h.append("x", seq=1)),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("operation", SAFE_OPERATIONS)
async def test_safe_operations_retry_every_retryable_fault(
    handle: StreamHandle,
    faults: ReferenceServer,
    delays: list[float],
    operation: str,
    fault: str,
) -> None:
    method, run = SAFE_OPERATIONS[operation]
    faults.inject_fault(handle.url, method=method, count=2, **FAULTS[fault])
    result = await run(handle)
    assert len(delays) == 2
    if fault == "429":
        assert all(delay >= 2 for delay in delays)  # Retry-After is a floor
    if operation == "exists":
        assert result is True
    if operation == "delete":
        assert not await handle.exists()
    if operation == "append-with-seq":
        assert (await handle.client.get(handle.url, params={"offset": "-1"})).text == "x"


@pytest.mark.parametrize("fault", ["503", "429"])
async def test_plain_append_retries_when_nothing_was_stored(
    handle: StreamHandle, faults: ReferenceServer, delays: list[float], fault: str
) -> None:
    faults.inject_fault(handle.url, method="POST", count=2, **FAULTS[fault])
    await handle.append("once")
    assert len(delays) == 2
    assert (await handle.client.get(handle.url, params={"offset": "-1"})).text == "once"


@pytest.mark.parametrize(("fault", "cause"), [("500", ServerError), ("drop", NetworkError)])
async def test_plain_append_after_ambiguous_failure_raises_outcome_unknown(
    handle: StreamHandle,
    faults: ReferenceServer,
    delays: list[float],
    fault: str,
    cause: type[Exception],
) -> None:
    tail = await _tail(handle)
    faults.inject_fault(handle.url, method="POST", **FAULTS[fault])
    with pytest.raises(AppendOutcomeUnknownError) as caught:
        await handle.append("maybe")
    assert isinstance(caught.value.__cause__, cause)
    message = str(caught.value)
    assert "IdempotentProducer" in message
    assert "seq=" in message
    assert delays == []
    assert await _tail(handle) == tail  # not retried, so not duplicated


@pytest.mark.parametrize("fault", FAULTS)
async def test_at_least_once_appends_retry_every_retryable_fault(
    stream_url: str, faults: ReferenceServer, delays: list[float], fault: str
) -> None:
    async with StreamHandle(stream_url, append_retry="at-least-once") as handle:
        await handle.create(content_type="text/plain")
        faults.inject_fault(stream_url, method="POST", count=2, **FAULTS[fault])
        await handle.append("data")
        assert len(delays) == 2
        assert (await handle.client.get(stream_url, params={"offset": "-1"})).text == "data"


async def test_retries_stop_at_max_attempts(
    handle: StreamHandle, faults: ReferenceServer, delays: list[float]
) -> None:
    faults.inject_fault(handle.url, method="HEAD", status=500, count=20)
    with pytest.raises(ServerError) as caught:
        await handle.head()
    assert caught.value.status == 500
    assert len(delays) == 3  # four attempts in all


async def test_retry_after_beyond_the_policy_cap_fails_at_once(
    stream_url: str, faults: ReferenceServer, delays: list[float]
) -> None:
    policy = RetryPolicy(max_delay=0.5, max_retry_after=3)
    async with StreamHandle(stream_url, retry=policy) as handle:
        faults.inject_fault(stream_url, method="PUT", status=429, retryAfter=3600)
        with pytest.raises(RateLimitedError) as caught:
            await handle.create()
    assert caught.value.retry_after == 3600
    assert delays == []


async def test_disabled_policy_raises_the_first_error(
    stream_url: str, faults: ReferenceServer, delays: list[float]
) -> None:
    async with StreamHandle(stream_url, retry=RetryPolicy.disabled()) as handle:
        faults.inject_fault(stream_url, status=429, retryAfter=7)
        with pytest.raises(RateLimitedError) as caught:
            await handle.create()
    assert caught.value.retry_after == 7
    assert delays == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, UnauthorizedError),
        (403, ForbiddenError),
        (405, NotSupportedError),
        (413, PayloadTooLargeError),
        (501, NotSupportedError),
    ],
)
async def test_non_retryable_statuses_are_typed_and_not_retried(
    handle: StreamHandle,
    faults: ReferenceServer,
    delays: list[float],
    status: int,
    error: type[StatusError],
) -> None:
    faults.inject_fault(handle.url, method="POST", status=status)
    with pytest.raises(error) as caught:
        await handle.append("x", seq=1)
    assert caught.value.status == status
    assert caught.value.body == "Injected error for testing"
    assert caught.value.headers is not None
    assert caught.value.headers["content-type"] == "text/plain"
    assert delays == []


async def test_network_errors_keep_the_httpx_cause(
    stream_url: str, faults: ReferenceServer, delays: list[float]
) -> None:
    async with StreamHandle(stream_url, retry=RetryPolicy.disabled()) as handle:
        faults.inject_fault(stream_url, dropConnection=True)
        with pytest.raises(NetworkError) as caught:
            await handle.head()
    assert isinstance(caught.value.__cause__, httpx.HTTPError)
    assert caught.value.code == "NETWORK_ERROR"


@pytest.mark.parametrize("status", [405, 501])
@pytest.mark.parametrize("operation", ["create", "head", "close", "delete"])
async def test_unsupported_operations_are_typed(
    handle: StreamHandle,
    faults: ReferenceServer,
    delays: list[float],
    operation: str,
    status: int,
) -> None:
    method, run = SAFE_OPERATIONS[operation]
    faults.inject_fault(handle.url, method=method, status=status)
    with pytest.raises(NotSupportedError) as caught:
        await run(handle)
    assert caught.value.status == status
    assert caught.value.code == "NOT_SUPPORTED"
    assert delays == []
