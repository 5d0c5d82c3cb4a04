"""Typed errors of the SDK.

Every error the SDK raises is a :class:`DurableStreamError`; raw httpx, JSON
and pydantic exceptions never escape (they are kept as ``__cause__``). Each
error has a ``code`` matching the conformance suite's error codes, and, when a
response arrived, its ``status``, the request ``url`` (secrets redacted), the
response ``headers`` (credentials redacted) and a short, escaped ``body``
excerpt::

    DurableStreamError                      INTERNAL_ERROR
    ├── InvalidArgumentError (ValueError)   INVALID_ARGUMENT
    │   └── EmptyAppendError                (nothing to append; refused locally, no status)
    ├── UsageError (RuntimeError)           INVALID_ARGUMENT (misuse: closed handle...)
    ├── ParseError                          PARSE_ERROR
    │   └── ValidationError                 (items that fail a pydantic model)
    ├── TransportError                      NETWORK_ERROR
    │   ├── NetworkError                    (connect refused, reset, dropped)
    │   ├── RequestTimeoutError             TIMEOUT
    │   └── AppendOutcomeUnknownError       (a plain append failed ambiguously)
    ├── StatusError                         UNEXPECTED_STATUS (any other status)
    │   ├── BadRequestError                 400
    │   │   ├── InvalidOffsetError          INVALID_OFFSET
    │   │   ├── InvalidJsonError            PARSE_ERROR (the server could not parse the JSON sent)
    │   │   │   └── InvalidItemError        (a producer item the server cannot parse; ``index``)
    │   │   └── InvalidSubscriptionRequestError  INVALID_REQUEST (a subscription request refused)
    │   │       └── WebhookUrlRejectedError      WEBHOOK_URL_REJECTED
    │   ├── UnauthorizedError               401
    │   │   └── WakeTokenError              TOKEN_INVALID (a wake's token is wrong or missing)
    │   │       └── WakeTokenExpiredError   TOKEN_EXPIRED
    │   ├── ForbiddenError                  403
    │   │   └── StaleEpochError             (producer fenced; ``current_epoch``)
    │   ├── NotFoundError                   404  NOT_FOUND
    │   │   └── SubscriptionNotFoundError   SUBSCRIPTION_NOT_FOUND
    │   ├── NotSupportedError               405 / 501  NOT_SUPPORTED
    │   ├── ConflictError                   409  CONFLICT
    │   │   ├── StreamClosedError           STREAM_CLOSED (``final_offset``)
    │   │   ├── SequenceConflictError       SEQUENCE_CONFLICT (``Stream-Seq`` regression)
    │   │   ├── ProducerSequenceGapError    (``expected_seq``, ``received_seq``)
    │   │   ├── StreamConfigMismatchError   (content type or create options differ)
    │   │   ├── SubscriptionExistsError     SUBSCRIPTION_ALREADY_EXISTS (another configuration)
    │   │   ├── AlreadyClaimedError         ALREADY_CLAIMED (``current_holder``, ``generation``)
    │   │   ├── FencedError                 FENCED (a newer wake took over; stop, never ack)
    │   │   ├── NoPendingWorkError          NO_PENDING_WORK
    │   │   └── AckOffsetError              INVALID_OFFSET (an ack the subscription refuses)
    │   ├── GoneError                       410
    │   ├── PayloadTooLargeError            413
    │   ├── RateLimitedError                429 (``retry_after``)
    │   └── ServerError                     5xx
    ├── ProducerError
    │   ├── ProducerBufferFullError         (``max_buffered_bytes`` reached)
    │   ├── ProducerClosedError             INVALID_ARGUMENT (used after close/detach)
    │   ├── ProducerFlushError              (``failures``: a BatchFailure per failed batch)
    │   └── ProducerIdentityError           (another live writer uses the producer id)
    ├── CheckpointError                     CHECKPOINT_ERROR (a checkpoint store failed)
    │   └── CheckpointCorruptError          (a stored checkpoint cannot be read back)
    ├── PositionRejectedError               POSITION_REJECTED (``reason``: the server's refusal)
    └── WebhookVerificationError            WEBHOOK_REJECTED (a webhook failed a check; ``reason``)

``StreamClosedError`` is raised for writes to a closed stream; a reader reaching
the end of a closed stream simply stops (that is EOF, not an error).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Any

import httpx
import pydantic

from . import _protocol as p
from ._redact import excerpt, redact_headers, redact_url, request_secrets, scrub, scrub_exception

__all__ = [
    "AppendOutcomeUnknownError",
    "AckOffsetError",
    "AlreadyClaimedError",
    "FencedError",
    "InvalidSubscriptionRequestError",
    "NoPendingWorkError",
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "WakeTokenError",
    "WakeTokenExpiredError",
    "WebhookUrlRejectedError",
    "WebhookVerificationError",
    "BadRequestError",
    "CheckpointCorruptError",
    "CheckpointError",
    "ConflictError",
    "DurableStreamError",
    "EmptyAppendError",
    "ForbiddenError",
    "GoneError",
    "InvalidArgumentError",
    "InvalidItemError",
    "InvalidJsonError",
    "InvalidOffsetError",
    "NetworkError",
    "NotFoundError",
    "NotSupportedError",
    "ParseError",
    "PayloadTooLargeError",
    "PositionRejectedError",
    "ProducerBufferFullError",
    "ProducerClosedError",
    "ProducerError",
    "ProducerFlushError",
    "ProducerIdentityError",
    "ProducerSequenceGapError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SequenceConflictError",
    "ServerError",
    "StaleEpochError",
    "StatusError",
    "StreamClosedError",
    "StreamConfigMismatchError",
    "TransportError",
    "UnauthorizedError",
    "UsageError",
    "ValidationError",
]


class DurableStreamError(Exception):
    """Base class of every error raised by this SDK.

    Example::

        try:
            await handle.append(b"x")
        except DurableStreamError as exc:
            log.warning("append failed: %s (code=%s, status=%s)", exc, exc.code, exc.status)
    """

    #: The conformance error code (a class attribute; aggregate errors set their own).
    code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | httpx.URL | None = None,
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = redact_url(url) if url is not None else None
        self.headers: dict[str, str] | None = (
            redact_headers(headers) if headers is not None else None
        )
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        if self.url and self.url not in self.message:
            parts.append(f"[{self.url}]")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, url={self.url!r})"


class InvalidArgumentError(DurableStreamError, ValueError):
    """The caller passed a value the SDK rejects before sending anything.

    ``field`` names the offending argument when there is one.
    """

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class EmptyAppendError(InvalidArgumentError):
    """An append with no data. The SDK refuses it locally and sends nothing, so there is
    no ``status`` (a server would answer 400)."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, field="data", **kwargs)


class UsageError(DurableStreamError, RuntimeError):
    """The SDK was used in a way it does not support: a handle used after ``aclose()``,
    a read response consumed a second time, ``batch.items`` on a stream that is not
    JSON. Always local: ``status`` is None. ``code`` is ``INVALID_ARGUMENT``, the
    conformance code for input the client rejects."""

    code = "INVALID_ARGUMENT"


class ParseError(DurableStreamError):
    """A response body or SSE event could not be parsed (truncated or corrupt JSON,
    a malformed control event). ``offset`` is the offset the data was read from."""

    code = "PARSE_ERROR"

    def __init__(self, message: str, *, offset: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.offset = offset


class ValidationError(ParseError):
    """Stream items did not validate against the model given to ``iter_json(model=...)``."""


class TransportError(DurableStreamError):
    """No usable response: the connection failed, dropped, or timed out."""

    code = "NETWORK_ERROR"


class NetworkError(TransportError):
    """Connection refused, reset or dropped, or a protocol-level HTTP failure."""


class RequestTimeoutError(TransportError):
    """An operation that had to complete ran past its deadline."""

    code = "TIMEOUT"


class AppendOutcomeUnknownError(TransportError):
    """A plain append failed in a way that leaves unknown whether the server applied it.

    The SDK does not retry it because a retry could write the data twice. Use an
    :class:`~durable_streams.IdempotentProducer` (exactly-once retries) or pass
    ``seq=`` (``Stream-Seq``: a retry of the same seq is rejected instead of
    duplicated), or opt into at-least-once retries with
    ``StreamHandle(..., append_retry="at-least-once")``.
    """


class StatusError(DurableStreamError):
    """The server answered with an error status that has no more specific class."""

    code = "UNEXPECTED_STATUS"

    @property
    def retry_after(self) -> float | None:
        """Seconds from the response's ``Retry-After`` header, if it had one."""
        if not self.headers:
            return None
        return parse_retry_after(self.headers.get(p.RETRY_AFTER))


class BadRequestError(StatusError):
    """400: the server rejected the request (bad headers, body or parameters)."""


class InvalidOffsetError(BadRequestError):
    """400 on a read: the offset is malformed or not one this stream issued."""

    code = "INVALID_OFFSET"


class InvalidJsonError(BadRequestError):
    """400 to a write: the server could not parse the JSON that was sent (``str``/``bytes``
    appended to a JSON stream are sent as they are, unchecked)."""

    code = "PARSE_ERROR"


class InvalidItemError(InvalidJsonError):
    """400 to a producer batch, caused by this one item: it is not valid JSON.

    ``index`` is the item's position in the producer's append order (0 for
    the first item it took). The item fails alone; the items around it are
    stored without it.

    Example::

        try:
            await producer.send('{"broken": ')
        except InvalidItemError as exc:
            print(exc.index, exc)
    """

    def __init__(self, message: str, *, index: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.index = index


class InvalidSubscriptionRequestError(BadRequestError):
    """400 ``INVALID_REQUEST`` from a subscription route: a malformed configuration or
    body, or an operation the subscription's type does not support."""

    code = "INVALID_REQUEST"


class WebhookUrlRejectedError(InvalidSubscriptionRequestError):
    """400 ``WEBHOOK_URL_REJECTED``: the server refuses the webhook URL (https or loopback only)."""

    code = "WEBHOOK_URL_REJECTED"


class UnauthorizedError(StatusError):
    """401: credentials are missing or were rejected."""


class WakeTokenError(UnauthorizedError):
    """401 ``TOKEN_INVALID``: the wake's bearer token is missing, malformed or not this wake's."""

    code = "TOKEN_INVALID"


class WakeTokenExpiredError(WakeTokenError):
    """401 ``TOKEN_EXPIRED``: the wake's token has expired (its lease is gone)."""

    code = "TOKEN_EXPIRED"


class ForbiddenError(StatusError):
    """403: the request is not allowed."""


class StaleEpochError(ForbiddenError):
    """403 to a producer: a newer epoch has fenced this one. ``current_epoch`` is the server's."""

    def __init__(self, message: str, *, current_epoch: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.current_epoch = current_epoch


class NotFoundError(StatusError):
    """404: the stream does not exist (or has expired)."""

    code = "NOT_FOUND"


class SubscriptionNotFoundError(NotFoundError):
    """404 ``SUBSCRIPTION_NOT_FOUND``: no such subscription (never created, or deleted)."""

    code = "SUBSCRIPTION_NOT_FOUND"


class NotSupportedError(StatusError):
    """405 / 501: the server does not support this operation at this URL."""

    code = "NOT_SUPPORTED"


class ConflictError(StatusError):
    """409: the request conflicts with the stream's state."""

    code = "CONFLICT"


class StreamClosedError(ConflictError):
    """The stream is closed: no more data can be appended. ``final_offset`` is its end."""

    code = "STREAM_CLOSED"

    def __init__(self, message: str, *, final_offset: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.final_offset = final_offset


class SequenceConflictError(ConflictError):
    """409: the ``Stream-Seq`` sent is not greater than the last one the stream accepted."""

    code = "SEQUENCE_CONFLICT"


class ProducerSequenceGapError(ConflictError):
    """409 to a producer: the server expected sequence ``expected_seq``, got ``received_seq``."""

    def __init__(
        self,
        message: str,
        *,
        expected_seq: int | None = None,
        received_seq: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.expected_seq = expected_seq
        self.received_seq = received_seq


class StreamConfigMismatchError(ConflictError):
    """409: the stream exists with another content type or configuration."""


class SubscriptionExistsError(ConflictError):
    """409 ``SUBSCRIPTION_ALREADY_EXISTS``: the id is taken by a different configuration."""

    code = "SUBSCRIPTION_ALREADY_EXISTS"


class AlreadyClaimedError(ConflictError):
    """409 ``ALREADY_CLAIMED``: another worker holds the subscription's wake.

    Losing a claim race is normal for pull-wake workers. ``current_holder`` is the
    holder's worker name and ``generation`` the wake generation it holds.
    """

    code = "ALREADY_CLAIMED"

    def __init__(
        self,
        message: str,
        *,
        current_holder: str | None = None,
        generation: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.current_holder = current_holder
        self.generation = generation


class FencedError(ConflictError):
    """409 ``FENCED``: the wake's ``wake_id``/``generation`` is stale; a newer wake owns the
    work. Stop processing it at once and never ack it."""

    code = "FENCED"


class NoPendingWorkError(ConflictError):
    """409 ``NO_PENDING_WORK``: a claim found every linked stream acknowledged up to its tail."""

    code = "NO_PENDING_WORK"


class AckOffsetError(ConflictError):
    """409 ``INVALID_OFFSET`` to an ack: the stream is not linked, or the offset is ``-1``,
    behind the acknowledged offset, or past the tail."""

    code = "INVALID_OFFSET"


class GoneError(StatusError):
    """410: the data at this offset is no longer retained, or the stream was soft-deleted."""


class PayloadTooLargeError(StatusError):
    """413: the request body is larger than the server accepts."""


class RateLimitedError(StatusError):
    """429: too many requests. ``retry_after`` says how long the server asked to wait."""


class ServerError(StatusError):
    """5xx: the server failed."""


class ProducerError(DurableStreamError):
    """Base class of errors specific to :class:`~durable_streams.IdempotentProducer`."""


class ProducerBufferFullError(ProducerError):
    """``append()`` would take the producer past ``max_buffered_bytes``.

    Await ``producer.wait_for_capacity()`` or use ``await producer.send(...)``,
    which waits for room instead of raising.
    """


class ProducerClosedError(ProducerError):
    """The producer was closed or detached and takes no more items."""

    code = "INVALID_ARGUMENT"


@dataclass(frozen=True)
class BatchFailure:
    """A producer batch that failed for good, as reported by ``on_error`` and flush errors.

    ``first_index`` is the position of its first item in the producer's append
    order (0 for the first item the producer took); its items are
    ``first_index`` to ``first_index + item_count - 1``. An item the server
    could not parse fails alone (``item_count == 1``), and the items around it
    are sent without it.

    Example::

        def on_error(error: DurableStreamError, failure: BatchFailure) -> None:
            lost = range(failure.first_index, failure.first_index + failure.item_count)
            log.error("items %s failed: %s", lost, error)
    """

    epoch: int
    seq: int
    item_count: int
    byte_count: int
    error: DurableStreamError
    first_index: int = 0


class ProducerFlushError(ProducerError):
    """One or more batches failed for good. ``failures`` lists them with their errors."""

    def __init__(self, message: str, *, failures: Sequence[BatchFailure], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.failures = list(failures)
        # The most specific code that is true of every failure: theirs when they agree.
        codes = {failure.error.code for failure in self.failures}
        if len(codes) == 1:
            self.code = codes.pop()
        if self.failures and self.__cause__ is None:
            self.__cause__ = self.failures[0].error

    @property
    def errors(self) -> list[DurableStreamError]:
        """The error of each failed batch, in order (``failures[i].error``)."""
        return [failure.error for failure in self.failures]


class ProducerIdentityError(ProducerError):
    """Another writer uses this producer id: continuing could lose data, so nothing more is sent.

    Raised when the server answers a batch this producer never sent before as
    a duplicate (another incarnation already holds that ``(id, epoch, seq)``),
    echoes a ``Producer-Seq`` this producer never reached, fences it (403)
    after it had written with ``auto_claim=True``, or keeps fencing it while
    it claims. One producer id must have one live writer: give concurrent
    writers distinct ids, and let a restarted process take a higher epoch
    (``epoch="auto"``, the default, does).

    Example::

        try:
            await producer.flush()
        except ProducerFlushError as exc:
            if any(isinstance(f.error, ProducerIdentityError) for f in exc.failures):
                ...  # another process writes as this producer: stop this one
    """

    def __init__(
        self,
        message: str,
        *,
        producer_id: str,
        epoch: int,
        seq: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.producer_id = producer_id
        self.epoch = epoch
        self.seq = seq


class CheckpointError(DurableStreamError):
    """A checkpoint store failed to load or save (I/O or database error, kept as ``__cause__``)."""

    code = "CHECKPOINT_ERROR"


class CheckpointCorruptError(CheckpointError):
    """A stored checkpoint cannot be read back (a damaged file, a malformed row).

    ``location`` says where it is (a file path, or a table and key). The message
    says how to recover: remove the damaged checkpoint to start over from the
    consumer's ``start``, or save a known position with ``consumer.seek()``.
    """

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class PositionRejectedError(DurableStreamError):
    """The server will not read a consumer's stream from its position.

    The stream was deleted or never created (404), the data at the position is no
    longer retained or the stream was soft-deleted (410), or the stored position
    is not one this stream issued (400). ``reason`` is the server's error (also
    ``__cause__``), ``position`` the position that was refused and ``consumer``
    the consumer's name. Restart with ``await consumer.seek("-1")`` (from the
    start) or ``await consumer.seek("now")`` (from the tail), then read again.
    """

    code = "POSITION_REJECTED"

    def __init__(
        self,
        message: str,
        *,
        reason: DurableStreamError,
        position: Any,
        consumer: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason
        self.position = position
        self.consumer = consumer


class WebhookVerificationError(DurableStreamError):
    """A webhook request failed verification and must be refused (reply 401).

    ``reason`` says which check failed, one of ``"malformed"`` (no or unparsable
    ``Webhook-Signature`` header or body), ``"timestamp"`` (outside the tolerance),
    ``"unknown_key"`` (no key with that ``kid``, even after refetching the JWKS),
    ``"signature"`` (the Ed25519 signature does not match) or ``"subscription"``
    (another subscription's notification). Local: ``status`` is None. The message
    never contains the signature, the body or any token.
    """

    code = "WEBHOOK_REJECTED"

    def __init__(self, message: str, *, reason: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


def invalid_options(model: str, exc: pydantic.ValidationError) -> InvalidArgumentError:
    """The error for options a pydantic model refused: its first problem, named by field."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else None
    return InvalidArgumentError(f"invalid {model}: {field}: {first['msg']}", field=field)


# -- status mapping --------------------------------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_STATUS_CLASSES: dict[int, type[StatusError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: NotSupportedError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    501: NotSupportedError,
}

_DESCRIPTIONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "stream not found",
    405: "method not allowed",
    409: "conflict",
    410: "gone",
    413: "payload too large",
    429: "rate limited",
    501: "not implemented",
}


def error_for_response(
    response: httpx.Response,
    *,
    operation: str,
    body: bytes | None = None,
    sent_stream_seq: bool = False,
    is_read: bool = False,
    is_create: bool = False,
) -> StatusError:
    """The typed error for an unsuccessful response to ``operation``.

    ``body`` is the response content if it was read. 409s are classified by
    headers, never by the body text, as the protocol asks.
    """
    status = response.status_code
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a response built without its request
        request = None
    url = request.url if request is not None else None
    # A server (or proxy) may echo the request's credentials back: in its body, in a
    # Location header, anywhere. They are removed before anything is kept.
    secrets = request_secrets(request)
    headers: Mapping[str, str] = response.headers
    if secrets:
        headers = {name: scrub(value, secrets) for name, value in response.headers.items()}
    text = excerpt(scrub(body.decode("utf-8", "replace"), secrets)) if body else None
    where = redact_url(url) if url is not None else "the stream"
    description = _DESCRIPTIONS.get(status) or (
        "server error" if status >= 500 else "unexpected status"
    )
    message = f"{operation} failed: {status} {description} at {where}"
    if text:
        message += f": {text}"
    common: dict[str, Any] = {"status": status, "url": url, "headers": headers, "body": text}

    if status == 409:
        if is_create:
            # Whatever the headers say, a 409 to PUT means "exists with another configuration".
            return StreamConfigMismatchError(message, **common)
        if p.flag(headers.get(p.STREAM_CLOSED)):
            return StreamClosedError(
                f"{operation} failed: stream is closed at {where}",
                final_offset=headers.get(p.STREAM_NEXT_OFFSET),
                **common,
            )
        expected = p.header_int(headers, p.PRODUCER_EXPECTED_SEQ)
        if expected is not None:
            return ProducerSequenceGapError(
                message,
                expected_seq=expected,
                received_seq=p.header_int(headers, p.PRODUCER_RECEIVED_SEQ),
                **common,
            )
        if sent_stream_seq:
            return SequenceConflictError(message, **common)
        return StreamConfigMismatchError(message, **common)
    if status == 403:
        epoch = p.header_int(headers, p.PRODUCER_EPOCH)
        if epoch is not None:
            return StaleEpochError(
                f"{operation} failed: producer epoch is stale (server epoch {epoch}) at {where}",
                current_epoch=epoch,
                **common,
            )
    if status == 400 and is_read and text and "offset" in text.lower():
        return InvalidOffsetError(message, **common)
    if status == 400 and not is_read and text and "json" in text.lower():
        return InvalidJsonError(message, **common)
    cls = _STATUS_CLASSES.get(status) or (ServerError if status >= 500 else StatusError)
    return cls(message, **common)


def error_for_exception(
    exc: Exception, *, operation: str, url: str | httpx.URL
) -> DurableStreamError:
    """Wrap an httpx transport exception in the SDK's typed error (keep it as ``__cause__``).

    The httpx exception is scrubbed first: it loses its reference to the request (URL
    and headers, credentials included) and its own chain, and the request's secrets
    are removed from its message. A local protocol error (a request h11 refuses to
    write) is an :class:`InvalidArgumentError`, never retried.
    """
    request: httpx.Request | None = None
    if isinstance(exc, httpx.HTTPError):
        try:
            request = exc.request
        except RuntimeError:  # raised without a request
            request = None
    scrub_exception(exc, request)
    where = redact_url(url)
    kind = type(exc).__name__
    if isinstance(exc, httpx.LocalProtocolError):
        invalid = InvalidArgumentError(
            f"{operation} failed: the request could not be written ({kind}: "
            f"{excerpt(str(exc))}) for {where}",
            url=url,
        )
        invalid.__cause__ = exc
        return invalid
    error: TransportError
    if isinstance(exc, httpx.TimeoutException):
        error = RequestTimeoutError(f"{operation} timed out ({kind}) at {where}", url=url)
    else:
        error = NetworkError(f"{operation} failed: {kind} at {where}", url=url)
    error.__cause__ = exc
    return error


# Subscription (control route) errors carry their code in a JSON body,
# ``{"error": {"code": ..., "message": ...}}``: there the code is the protocol.
_CONTROL_CODES: dict[str, type[StatusError]] = {
    "INVALID_REQUEST": InvalidSubscriptionRequestError,
    "WEBHOOK_URL_REJECTED": WebhookUrlRejectedError,
    "TOKEN_INVALID": WakeTokenError,
    "TOKEN_EXPIRED": WakeTokenExpiredError,
    "SUBSCRIPTION_NOT_FOUND": SubscriptionNotFoundError,
    "SUBSCRIPTION_ALREADY_EXISTS": SubscriptionExistsError,
    "ALREADY_CLAIMED": AlreadyClaimedError,
    "FENCED": FencedError,
    "NO_PENDING_WORK": NoPendingWorkError,
    "INVALID_OFFSET": AckOffsetError,
}


def error_for_control_response(
    response: httpx.Response, *, operation: str, body: bytes | None = None
) -> StatusError:
    """The typed error for an unsuccessful response from a subscription route.

    The body's ``error.code`` picks the class when the status agrees with it (a
    code under the wrong status is not believed: the status class is used, as for
    any other route). ``ALREADY_CLAIMED`` keeps ``current_holder`` and ``generation``.
    """
    generic = error_for_response(response, operation=operation, body=body)
    common: dict[str, Any] = {
        "status": generic.status,
        "url": generic.url,
        "headers": generic.headers,
        "body": generic.body,
    }
    status = response.status_code
    # The stream routes' header heuristics (a 409 is a config mismatch...) mean nothing here.
    status_cls = _STATUS_CLASSES.get(status) or (ServerError if status >= 500 else StatusError)
    detail = _control_error_detail(body)
    code = detail.get("code") if detail is not None else None
    cls = _CONTROL_CODES.get(code) if isinstance(code, str) else None
    label = code if cls is not None and issubclass(cls, status_cls) else None
    description = "not found" if status == 404 else _DESCRIPTIONS.get(status)
    description = description or ("server error" if status >= 500 else "unexpected status")
    message = f"{operation} failed: {status} {label or description}"
    message += f" at {generic.url}" if generic.url else ""
    message += f": {generic.body}" if generic.body else ""
    if detail is None or cls is None or label is None:
        return status_cls(message, **common)
    if cls is AlreadyClaimedError:
        holder = detail.get("current_holder")
        generation = detail.get("generation")
        return AlreadyClaimedError(
            message,
            current_holder=holder if isinstance(holder, str) else None,
            generation=generation
            if isinstance(generation, int) and not isinstance(generation, bool)
            else None,
            **common,
        )
    return cls(message, **common)


def _control_error_detail(body: bytes | None) -> dict[str, Any] | None:
    if not body or len(body) > 65536:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    detail = document.get("error") if isinstance(document, dict) else None
    return detail if isinstance(detail, dict) else None
