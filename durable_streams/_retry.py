"""Retry policy: exponential backoff with full jitter, ``Retry-After`` as a floor.

The delay arithmetic and the stop conditions are tenacity's
(``wait_random_exponential``, ``stop_after_attempt``, ``stop_after_delay``); the
loop around them is ours so that a request that succeeds first time costs
nothing extra, sleeps go through anyio (cancellable on asyncio and trio), and
the read loop can reuse the same :class:`Backoff` between requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pydantic
import tenacity
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ._errors import (
    DurableStreamError,
    RateLimitedError,
    ServerError,
    StatusError,
    TransportError,
    invalid_options,
)
from ._telemetry import RESEND_COUNT

__all__ = ["Backoff", "RetryPolicy", "is_retryable", "sleep"]

logger = logging.getLogger("durable_streams")

T = TypeVar("T")

# Sleeping is looked up through this name so tests can observe delays without waiting.
_sleep: Callable[[float], Awaitable[None]] = anyio.sleep


async def sleep(seconds: float) -> None:
    """Sleep before a retry (through ``_sleep``, which tests replace to observe delays)."""
    await _sleep(seconds)


# RetryCallState wants its controller; ours only lends it an identity.
_RETRYING = tenacity.Retrying()


class RetryPolicy(BaseModel):
    """How failed requests are retried: network errors, timeouts, 5xx and 429 only.

    Delays grow exponentially from ``initial_delay`` by ``multiplier`` up to
    ``max_delay``, each one drawn uniformly from ``[0, bound]`` (full jitter). A
    ``Retry-After`` header is a floor for the next delay; one above
    ``max_retry_after`` (or one that would end past ``max_elapsed``) fails at once
    with the error that carried it (``error.retry_after`` says how long it asked).
    The policy gives up after ``max_attempts`` attempts in
    all (the first one included) or when the next attempt would start more than
    ``max_elapsed`` seconds after the first one, whichever comes first; ``None``
    turns a limit off.

    Example::

        policy = RetryPolicy(initial_delay=0.05, max_delay=2.0, max_attempts=5)
        handle = StreamHandle(url, retry=policy)
        never = RetryPolicy.disabled()
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_delay: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    max_delay: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    multiplier: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)
    max_attempts: int | None = Field(default=8, ge=1)
    max_elapsed: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_retry_after: float = Field(default=60.0, ge=0, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise invalid_options("RetryPolicy", exc) from None

    @field_validator("max_delay")
    @classmethod
    def _check_max_delay(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial_delay")
        if initial is not None and value < initial:
            raise ValueError("max_delay must be at least initial_delay")
        return value

    def without_limits(self) -> RetryPolicy:
        """The same delays with no attempt or elapsed-time limit (what live reads use).

        Example::

            follower = RetryPolicy(max_delay=10).without_limits()
        """
        return self.model_copy(update={"max_attempts": None, "max_elapsed": None})

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def backoff(self, *, started_at: float | None = None) -> Backoff:
        """A fresh retry state for one operation (or one read session).

        ``started_at`` (a ``time.monotonic()`` value) is when the operation's first
        attempt began; ``max_elapsed`` counts from there (default: now).
        """
        return Backoff(self, started_at=started_at)


class Backoff:
    """Retry state of one operation: counts attempts and picks the next delay."""

    __slots__ = ("_policy", "_state", "_stop", "_wait")

    def __init__(self, policy: RetryPolicy, *, started_at: float | None = None) -> None:
        self._policy = policy
        self._wait = tenacity.wait_random_exponential(
            multiplier=policy.initial_delay, exp_base=policy.multiplier, max=policy.max_delay
        )
        stop: tenacity.stop.stop_base = tenacity.stop_never
        if policy.max_attempts is not None:
            stop = tenacity.stop_after_attempt(policy.max_attempts)
        if policy.max_elapsed is not None:
            stop = stop | tenacity.stop_after_delay(policy.max_elapsed)
        self._stop = stop
        self._state = tenacity.RetryCallState(_RETRYING, None, (), {})
        if started_at is not None:
            self._state.start_time = started_at

    @property
    def attempts(self) -> int:
        """Failed attempts so far since the last :meth:`reset`."""
        return self._state.attempt_number - 1

    def reset(self) -> None:
        """Forget earlier failures (after a success in a long-running session)."""
        self._state = tenacity.RetryCallState(_RETRYING, None, (), {})

    def next_delay(self, error: BaseException) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to give up.

        Non-retryable errors give up at once.
        """
        if not is_retryable(error):
            return None
        state = self._state
        state.outcome_timestamp = time.monotonic()
        if self._stop(state):
            return None
        delay = float(self._wait(state))
        retry_after = error.retry_after if isinstance(error, StatusError) else None
        if retry_after is not None:
            if retry_after > self._policy.max_retry_after:
                # Sleeping less than asked would only be refused again, and sleeping
                # as asked could be days: give up now (the error has ``retry_after``).
                return None
            delay = max(delay, retry_after)
        limit = self._policy.max_elapsed
        if limit is not None and state.outcome_timestamp - state.start_time + delay > limit:
            return None  # the next attempt would start past the deadline
        state.attempt_number += 1
        return delay

    async def sleep_before_retry(self, error: BaseException, what: str) -> None:
        """Sleep before the next attempt, or re-raise ``error`` if the policy gives up."""
        delay = self.next_delay(error)
        if delay is None:
            if is_retryable(error):  # the policy's limits ran out (an operator wants to know)
                logger.info("giving up on %s after %d attempts: %s", what, self.attempts + 1, error)
            raise error
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "retrying %s in %.3fs (attempt %d failed: %s)",
                what,
                delay,
                self.attempts,
                error,
            )
        await _sleep(delay)


def is_retryable(error: BaseException) -> bool:
    """Whether the protocol allows retrying after ``error``: transport errors, 5xx, 429."""
    return isinstance(error, (TransportError, ServerError, RateLimitedError))


async def call_with_retry(
    policy: RetryPolicy,
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    retryable: Callable[[DurableStreamError], bool] = is_retryable,
) -> T:
    """Run ``operation``, retrying retryable failures under ``policy``."""
    backoff: Backoff | None = None
    started_at = time.monotonic()
    while True:
        try:
            if backoff is None:
                return await operation()
            # A resend: its trace span says which (http.request.resend_count).
            resending = RESEND_COUNT.set(backoff.attempts)
            try:
                return await operation()
            finally:
                RESEND_COUNT.reset(resending)
        except DurableStreamError as error:
            if not retryable(error):
                raise
            if backoff is None:
                backoff = policy.backoff(started_at=started_at)
            await backoff.sleep_before_retry(error, what)
