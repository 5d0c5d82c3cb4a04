"""Result models returned by the SDK (pydantic v2, immutable)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ._errors import DurableStreamError

__all__ = [
    "AppendResult",
    "BatchFailure",
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


@dataclass(frozen=True)
class BatchFailure:
    """A producer batch that failed for good, as reported by ``on_error`` and flush errors."""

    epoch: int
    seq: int
    item_count: int
    byte_count: int
    error: DurableStreamError


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
