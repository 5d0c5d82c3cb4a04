"""Validation and formatting of option values: create options that travel as
protocol headers, and the settings of an :class:`IdempotentProducer`.

Everything here runs before a request is built, so bad input becomes an
:class:`InvalidArgumentError` naming the argument and nothing is sent.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from . import _protocol as p
from ._errors import InvalidArgumentError
from ._retry import RetryPolicy
from ._transport import _Values, is_header_value
from ._types import HeadersArg, ParamsArg, ProducerOnError

__all__ = [
    "check_content_type",
    "check_producer_options",
    "create_headers",
    "format_expires_at",
    "format_seq",
    "parse_expires_at",
]


def create_headers(
    *,
    content_type: str | None,
    ttl: int | None,
    expires_at: datetime | str | None,
    closed: bool,
    forked_from: str | None,
    fork_offset: str | None,
    fork_sub_offset: int | None,
) -> dict[str, str]:
    """The protocol headers of a create (``PUT``) request.

    A fork inherits its source's content type, so only a plain create falls back
    to ``application/octet-stream`` when no type is given.
    """
    protocol: dict[str, str] = {}
    kind = check_content_type(content_type)
    if kind is not None:
        protocol[p.CONTENT_TYPE] = kind
    elif forked_from is None:
        protocol[p.CONTENT_TYPE] = p.DEFAULT_CONTENT_TYPE
    if ttl is not None and expires_at is not None:
        raise InvalidArgumentError("pass either ttl or expires_at, not both", field="ttl")
    if ttl is not None:
        protocol[p.STREAM_TTL] = str(_non_negative_int(ttl, "ttl"))
    if expires_at is not None:
        protocol[p.STREAM_EXPIRES_AT] = format_expires_at(expires_at)
    if closed:
        protocol[p.STREAM_CLOSED] = p.TRUE
    if forked_from is not None:
        source = _header_str(forked_from, "forked_from", "a stream path or URL")
        protocol[p.STREAM_FORKED_FROM] = _header_str(
            _path_of(source), "forked_from", "a stream path or URL"
        )
        if fork_offset is not None:
            protocol[p.STREAM_FORK_OFFSET] = _header_str(
                fork_offset, "fork_offset", "an offset the server issued"
            )
        if fork_sub_offset is not None:
            protocol[p.STREAM_FORK_SUB_OFFSET] = str(
                _non_negative_int(fork_sub_offset, "fork_sub_offset")
            )
    elif fork_offset is not None or fork_sub_offset is not None:
        raise InvalidArgumentError("fork_offset needs forked_from", field="fork_offset")
    return protocol


def _non_negative_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{field} must be a non-negative integer", field=field)
    return value


def format_seq(seq: str | int) -> str:
    if isinstance(seq, int) and not isinstance(seq, bool):
        if seq < 0:
            raise InvalidArgumentError("seq must be non-negative", field="seq")
        # Stream-Seq compares byte-wise: zero-pad so 10 sorts after 9.
        return f"{seq:016d}"
    return _header_str(seq, "seq", "a non-negative int or a non-empty str")


def _header_str(value: object, field: str, what: str) -> str:
    """``value`` if it is a str that can be sent as a header value, else an InvalidArgumentError."""
    if not isinstance(value, str) or not value or not is_header_value(value):
        raise InvalidArgumentError(f"{field} must be {what}, not {value!r}", field=field)
    return value


def check_content_type(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or not is_header_value(value):
        raise InvalidArgumentError(
            f"content_type must be a MIME type such as 'application/json', not {value!r}",
            field="content_type",
        )
    return value


def format_expires_at(value: datetime | str) -> str:
    """RFC 3339 in one canonical form: the server compares it as a raw string on re-create."""
    if isinstance(value, str):
        if not value or not is_header_value(value):
            raise InvalidArgumentError(
                "expires_at must be an RFC 3339 timestamp", field="expires_at"
            )
        return value
    if not isinstance(value, datetime):
        raise InvalidArgumentError(
            f"expires_at must be an aware datetime or an RFC 3339 str, not {type(value).__name__}",
            field="expires_at",
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            "expires_at must be timezone-aware (e.g. datetime.now(timezone.utc))",
            field="expires_at",
        )
    utc = value.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_expires_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _path_of(source: str) -> str:
    """The path of a fork source given as a path or a URL."""
    if "://" in source:
        parts = urlsplit(source)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return source


def check_producer_options(
    *,
    producer_id: str,
    epoch: int,
    linger_ms: float,
    max_batch_bytes: int,
    max_batch_items: int | None,
    max_in_flight: int,
    max_buffered_bytes: int,
    retry: RetryPolicy | None,
    on_error: ProducerOnError | None,
    headers: HeadersArg,
    params: ParamsArg,
) -> None:
    """Reject bad :class:`IdempotentProducer` settings when it is constructed."""
    if not isinstance(producer_id, str) or not producer_id:
        raise InvalidArgumentError("producer_id must be a non-empty string", field="producer_id")
    _check_int("epoch", epoch, minimum=0)
    if epoch > p.MAX_SAFE_INTEGER:
        raise InvalidArgumentError("epoch must be at most 2**53 - 1", field="epoch")
    if (
        isinstance(linger_ms, bool)
        or not isinstance(linger_ms, (int, float))
        or not (0 <= linger_ms < float("inf"))
    ):
        raise InvalidArgumentError("linger_ms must be a finite number >= 0", field="linger_ms")
    _check_int("max_batch_bytes", max_batch_bytes, minimum=1)
    if max_batch_items is not None:
        _check_int("max_batch_items", max_batch_items, minimum=1)
    _check_int("max_in_flight", max_in_flight, minimum=1)
    _check_int("max_buffered_bytes", max_buffered_bytes, minimum=1)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidArgumentError("retry must be a RetryPolicy", field="retry")
    if on_error is not None and not callable(on_error):
        raise InvalidArgumentError("on_error must be callable", field="on_error")
    _Values(headers, lower=True)  # validates the value types now, not at the first send
    _Values(params, lower=False)


def _check_int(field: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{field} must be an integer", field=field)
    if value < minimum:
        raise InvalidArgumentError(f"{field} must be >= {minimum}, got {value}", field=field)
