"""Types that appear in public signatures: argument aliases, hooks and what hooks return.

A leaf of the package: it imports only :mod:`._errors` (for the error types
that hooks receive), so every other module can use these names without an
import cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ._errors import BatchFailure, DurableStreamError

__all__ = [
    "AppendRetry",
    "HeadersArg",
    "LiveMode",
    "OnError",
    "ParamsArg",
    "ProducerOnError",
    "RetryWith",
    "ValueSource",
]

ValueSource: TypeAlias = "str | Callable[[], str] | Callable[[], Awaitable[str]]"
"""A header or parameter value: a string, or a sync/async callable returning one,
called on every request (for tokens that refresh)."""

HeadersArg: TypeAlias = "Mapping[str, ValueSource] | None"
"""Extra request headers: names to values (see :data:`ValueSource`)."""

ParamsArg: TypeAlias = "Mapping[str, ValueSource] | None"
"""Extra query parameters: names to values (see :data:`ValueSource`)."""

LiveMode = Literal[False, True, "long-poll", "sse", "auto"]
"""How a read continues once it is caught up.

``False``: stop at up-to-date. ``"long-poll"`` / ``"sse"``: that transport.
``True``: long-poll. ``"auto"``: SSE, falling back to long-poll when SSE
connections keep ending early (as buffering proxies make them do).
"""

AppendRetry = Literal["safe", "at-least-once"]
"""When a plain append (no producer headers) is retried.

``"safe"`` (default): only when the failure proves nothing was written
(connection refused, 429, 503); any other failure raises
:class:`AppendOutcomeUnknownError`. ``"at-least-once"``: on every retryable
failure, accepting that a retry may store the data twice.
"""


@dataclass(frozen=True, slots=True)
class RetryWith:
    """Returned from an ``on_error`` hook: retry with these headers/params merged in.

    They apply to every later request of the read session (e.g. a refreshed
    token after a 401).

    Example::

        async def refresh(error: DurableStreamError) -> RetryWith | None:
            if isinstance(error, UnauthorizedError):
                return RetryWith(headers={"authorization": f"Bearer {await new_token()}"})
            return None  # retry as the policy says

        res = await handle.stream(offset=saved, live="auto", on_error=refresh)
    """

    headers: Mapping[str, ValueSource] | None = None
    params: Mapping[str, ValueSource] | None = None

    def __repr__(self) -> str:
        # Names only: the values are typically fresh credentials.
        headers = sorted(self.headers or {})
        params = sorted(self.params or {})
        return f"RetryWith(headers={headers!r}, params={params!r})"


OnError: TypeAlias = Callable[
    [DurableStreamError], "RetryWith | Awaitable[RetryWith | None] | None"
]
"""A read session's ``on_error(error)`` hook: sync or async. Return None to retry
as the policy says, a :class:`RetryWith` to retry with new headers/params, or
raise to end the session."""

ProducerOnError: TypeAlias = Callable[[DurableStreamError, BatchFailure], "Awaitable[None] | None"]
"""A producer's ``on_error(error, failure)`` hook: called once for every batch that
failed for good (sync or async; an exception it raises is logged and ignored)."""
