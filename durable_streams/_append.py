"""Plain appends (no producer): which failures may be retried, and the retry loop.

A plain append carries no idempotency key, so retrying one whose outcome is
unknown may store its data twice. Unless the caller sends ``Stream-Seq`` (a
retry of the same seq is refused instead of stored again) or accepts duplicates
(``append_retry="at-least-once"``), only failures that prove nothing was stored
are retried; any other raises :class:`AppendOutcomeUnknownError`.
"""

from __future__ import annotations

import time

import httpx

from . import _protocol as p
from ._errors import (
    AppendOutcomeUnknownError,
    DurableStreamError,
    NetworkError,
    RateLimitedError,
    SequenceConflictError,
    ServerError,
    StreamClosedError,
)
from ._models import AppendResult
from ._options import format_seq
from ._redact import redact_url
from ._retry import Backoff, is_retryable
from ._transport import Transport, response_flag
from ._types import AppendRetry, HeadersArg, ParamsArg

__all__ = ["post_append", "proves_not_applied"]


async def post_append(
    transport: Transport,
    body: bytes,
    *,
    content_type: str,
    seq: str | int | None,
    close: bool,
    headers: HeadersArg,
    params: ParamsArg,
    append_retry: AppendRetry,
) -> AppendResult:
    """Send one plain append (``POST``), retried under ``transport.retry`` as
    ``append_retry`` allows, and report what the server answered."""
    protocol = {p.CONTENT_TYPE: content_type}
    if seq is not None:
        protocol[p.STREAM_SEQ] = format_seq(seq)
    if close:
        protocol[p.STREAM_CLOSED] = p.TRUE
    operation = "append and close" if close else "append"
    backoff: Backoff | None = None
    started_at = time.monotonic()
    ambiguous = False  # an earlier attempt may have been applied
    while True:
        try:
            response = await transport.request(
                "POST",
                operation=operation,
                protocol_headers=protocol,
                headers=headers,
                params=params,
                content=body,
                sent_stream_seq=seq is not None,
                resend_count=backoff.attempts if backoff is not None else 0,
            )
            break
        except DurableStreamError as error:
            if ambiguous and isinstance(error, (SequenceConflictError, StreamClosedError)):
                raise AppendOutcomeUnknownError(
                    f"{operation} to {redact_url(transport.url)} was retried after an "
                    f"ambiguous failure and the retry was refused ({error.code}): the first "
                    "attempt was probably applied",
                    url=transport.url,
                ) from error
            if not is_retryable(error):
                raise
            proven = proves_not_applied(error)
            if not proven and seq is None and append_retry == "safe":
                raise AppendOutcomeUnknownError(
                    f"{operation} to {redact_url(transport.url)} failed ({error}) and may or "
                    "may not have been applied, so it was not retried. For safe retries use an "
                    "IdempotentProducer or pass seq= (Stream-Seq); "
                    "append_retry='at-least-once' accepts duplicates instead",
                    url=transport.url,
                ) from error
            ambiguous = ambiguous or not proven
            backoff = backoff or transport.retry.backoff(started_at=started_at)
            await backoff.sleep_before_retry(error, f"{operation} {redact_url(transport.url)}")
    headers_in = response.headers
    # Producer-* headers may come from the caller (``headers=``): report what the
    # server echoed, and 204 to a producer request means "already stored".
    producer = p.PRODUCER_EPOCH in headers_in
    return AppendResult(
        next_offset=headers_in.get(p.STREAM_NEXT_OFFSET),
        closed=response_flag(headers_in, p.STREAM_CLOSED),
        duplicate=producer and response.status_code == 204,
        producer_epoch=p.header_int(headers_in, p.PRODUCER_EPOCH),
        producer_seq=p.header_int(headers_in, p.PRODUCER_SEQ),
    )


def proves_not_applied(error: DurableStreamError) -> bool:
    """Whether a failed append certainly stored nothing, so retrying cannot duplicate it."""
    if isinstance(error, RateLimitedError):
        return True
    if isinstance(error, ServerError):
        return error.status == 503
    if isinstance(error, NetworkError):
        # The request never left: the connection could not be made.
        return isinstance(error.__cause__, (httpx.ConnectError, httpx.PoolTimeout))
    if error.__cause__ is not None:
        return isinstance(error.__cause__, (httpx.ConnectTimeout, httpx.PoolTimeout))
    return False
