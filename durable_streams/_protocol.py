"""Wire-level names and small helpers of the Durable Streams protocol.

Header names are lowercase: HTTP header names are case-insensitive, httpx
compares them that way, and one spelling lets protocol headers replace user
headers with a plain dict merge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Request and response headers.
CONTENT_TYPE: Final = "content-type"
STREAM_NEXT_OFFSET: Final = "stream-next-offset"
STREAM_CURSOR: Final = "stream-cursor"
STREAM_UP_TO_DATE: Final = "stream-up-to-date"
STREAM_CLOSED: Final = "stream-closed"
STREAM_SEQ: Final = "stream-seq"
STREAM_TTL: Final = "stream-ttl"
STREAM_EXPIRES_AT: Final = "stream-expires-at"
STREAM_FORKED_FROM: Final = "stream-forked-from"
STREAM_FORK_OFFSET: Final = "stream-fork-offset"
STREAM_FORK_SUB_OFFSET: Final = "stream-fork-sub-offset"
STREAM_SSE_DATA_ENCODING: Final = "stream-sse-data-encoding"
PRODUCER_ID: Final = "producer-id"
PRODUCER_EPOCH: Final = "producer-epoch"
PRODUCER_SEQ: Final = "producer-seq"
PRODUCER_EXPECTED_SEQ: Final = "producer-expected-seq"
PRODUCER_RECEIVED_SEQ: Final = "producer-received-seq"
ETAG: Final = "etag"
IF_NONE_MATCH: Final = "if-none-match"
RETRY_AFTER: Final = "retry-after"
LOCATION: Final = "location"

# Query parameters.
PARAM_OFFSET: Final = "offset"
PARAM_LIVE: Final = "live"
PARAM_CURSOR: Final = "cursor"
PROTOCOL_PARAMS: Final = frozenset({PARAM_OFFSET, PARAM_LIVE, PARAM_CURSOR})

# Offsets.
OFFSET_START: Final = "-1"
OFFSET_NOW: Final = "now"

# Values.
TRUE: Final = "true"  # the reference server ignores "TRUE": always send lowercase
LIVE_LONG_POLL: Final = "long-poll"
LIVE_SSE: Final = "sse"
SSE_BASE64: Final = "base64"
JSON_MEDIA_TYPE: Final = "application/json"
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
EVENT_STREAM_MEDIA_TYPE: Final = "text/event-stream"

#: Largest integer the protocol allows for producer epochs and sequence numbers.
MAX_SAFE_INTEGER: Final = 2**53 - 1

#: Largest single message a reader holds in memory (one SSE event, one JSON item
#: parsed from a streamed body); a server sending more gets a ParseError.
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value: lowercase, without parameters."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Whether a stream of this content type is in JSON mode (messages, not bytes)."""
    return media_type(content_type) == JSON_MEDIA_TYPE


def is_text(content_type: str | None) -> bool:
    """Whether stream content of this type is text (``text/*`` or JSON)."""
    kind = media_type(content_type)
    return kind.startswith("text/") or kind == JSON_MEDIA_TYPE


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer response header, or None when absent or malformed."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def flag(value: str | None) -> bool:
    """A boolean protocol header: only ``true`` (any case) counts as set."""
    return value is not None and value.strip().lower() == TRUE
