"""Result models returned by the SDK (pydantic v2, immutable) and small data types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._errors import ParseError, UsageError
from ._redact import excerpt

__all__ = [
    "AppendResult",
    "Batch",
    "CloseResult",
    "ControlEvent",
    "CreateResult",
    "ProducerAck",
    "ProducerStats",
    "StreamInfo",
]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CreateResult(_Result):
    """Outcome of :meth:`StreamHandle.create`.

    ``created`` is true when this call made the stream (201) and false when an
    identical stream already existed (200).
    """

    created: bool
    status: int
    next_offset: str | None = None
    closed: bool = False
    content_type: str | None = None
    location: str | None = None


class AppendResult(_Result):
    """Outcome of an append: the stream's new tail, and whether it is now closed.

    For appends with producer headers, ``duplicate`` is true when the server
    had already stored this batch (it was deduplicated), and ``producer_epoch``
    and ``producer_seq`` echo the server's producer state.
    """

    next_offset: str | None = None
    closed: bool = False
    duplicate: bool = False
    producer_epoch: int | None = None
    producer_seq: int | None = None


class CloseResult(_Result):
    """Outcome of closing a stream: ``final_offset`` is where its data ends."""

    final_offset: str | None = None
    closed: bool = True


class StreamInfo(_Result):
    """Stream metadata from ``HEAD``.

    ``ttl`` is the idle time-to-live in seconds and ``expires_at`` the absolute
    deadline, whichever the stream was created with.
    """

    content_type: str | None = None
    next_offset: str | None = None
    ttl: int | None = None
    expires_at: datetime | None = None
    closed: bool = False
    etag: str | None = None


class ControlEvent(BaseModel):
    """The JSON payload of an SSE ``control`` event."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    next_offset: str = Field(alias="streamNextOffset")
    cursor: str | None = Field(default=None, alias="streamCursor")
    up_to_date: bool = Field(default=False, alias="upToDate")
    closed: bool = Field(default=False, alias="streamClosed")


class ProducerAck(_Result):
    """Acknowledgement of one item sent with :meth:`IdempotentProducer.send`.

    ``offset`` is the stream's tail after the batch holding the item (None when
    the server answered 204 = duplicate, which carries no offset); ``epoch`` and
    ``seq`` are the producer tuple the batch was stored under.

    Example::

        ack = await producer.send(b"event")
        print(ack.offset, ack.duplicate, ack.epoch, ack.seq)
    """

    offset: str | None = None
    duplicate: bool = False
    epoch: int
    seq: int


@dataclass(frozen=True)
class ProducerStats:
    """A snapshot of a producer's counters since it was created.

    Example::

        stats = producer.stats
        print(stats.acked_messages, stats.duplicate_batches, stats.retries)
    """

    acked_messages: int  #: items acknowledged (duplicates included)
    acked_batches: int  #: batches acknowledged (duplicates included)
    duplicate_batches: int  #: batches answered 204: already stored (a lost success, retried)
    failed_batches: int  #: batches that failed for good
    retries: int  #: requests sent again after a network error, timeout, 5xx or 429
    sequence_gaps: int  #: 409 gap answers absorbed (a later batch overtook an earlier one)
    epoch_changes: int  #: moves to a new epoch (auto-claim, recovery, restart)


class Batch:
    """Data of one read response (or one SSE data+control group) and where it ends.

    ``offset`` is the offset after this batch: persist it (after handling the
    data) and pass it to ``stream(offset=...)`` to resume. ``data`` is the raw
    bytes, ``text`` their UTF-8 decoding, ``items`` the messages of a JSON stream.
    An empty batch tells that the read became up to date or the stream closed.

    Example::

        async for batch in res:
            for item in batch.items:
                handle_event(item)
            save_offset(batch.offset)
    """

    __slots__ = ("_data", "_items", "_json", "closed", "cursor", "offset", "up_to_date")

    def __init__(
        self,
        data: bytes | None,
        items: list[Any] | None,
        *,
        offset: str,
        cursor: str | None,
        up_to_date: bool,
        closed: bool,
        json_mode: bool,
    ) -> None:
        self._data = data
        self._items = items
        self._json = json_mode
        self.offset = offset
        self.cursor = cursor
        self.up_to_date = up_to_date
        self.closed = closed

    @property
    def data(self) -> bytes:
        """The bytes of this batch (on JSON streams: a JSON array of its items)."""
        if self._data is None:
            items = self._items if self._items is not None else []
            self._data = json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode()
        return self._data

    @property
    def text(self) -> str:
        """The data decoded as UTF-8 (a :class:`ParseError` if it is not UTF-8)."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"batch ending at offset {excerpt(self.offset)} is not valid UTF-8: {exc}",
                offset=self.offset,
            ) from None

    @property
    def items(self) -> list[Any]:
        """The messages of this batch, parsed (JSON streams only)."""
        if not self._json:
            raise UsageError(
                "batch.items is only available on JSON streams (application/json); "
                "use batch.data or batch.text"
            )
        if self._items is None:
            raise UsageError("batch.items is not available for streamed bodies")
        return self._items

    def __len__(self) -> int:
        return len(self._items) if self._json and self._items is not None else len(self.data)

    def __repr__(self) -> str:
        size = f"items={len(self._items)}" if self._items is not None else f"bytes={len(self.data)}"
        return (
            f"Batch({size}, offset={self.offset!r}, up_to_date={self.up_to_date}, "
            f"closed={self.closed})"
        )
