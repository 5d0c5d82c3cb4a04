"""The streams themselves: records, offsets, forks, producers, expiry, and waiting for change.

No HTTP here: :mod:`._server` turns requests into calls on :class:`Store` and results into
responses. Every method runs without awaiting, so each is atomic on the event loop; only
:meth:`Store.wait` awaits.

Offsets are ``"<16 digits>_<16 digits>"`` like the reference server's, with the first part always
0 and the second a *position*: a count of bytes (byte and text streams) or of messages (JSON
streams) from the start of the stream. Every position is a valid place to resume, so a catch-up
can be cut into pages anywhere (between any two JSON messages, or inside an append of bytes).
"""

from __future__ import annotations

import bisect
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import anyio

ZERO_OFFSET = "0000000000000000_0000000000000000"

#: Producer epochs and seqs are JSON-safe integers (0 ... 2^53 - 1).
MAX_SAFE_INTEGER = 2**53 - 1


class ProtocolFailure(Exception):
    """A request the protocol refuses: the HTTP status, a short text and extra headers."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text
        self.headers = headers or {}


def format_offset(position: int) -> str:
    """The offset string of a position: ``format_offset(5)`` ends in ``_0000000000000005``."""
    return f"{0:016d}_{position:016d}"


def parse_offset(text: str) -> tuple[int, int] | None:
    """``(high, position)`` of an offset string, or None if it is not ``digits_digits``."""
    high, sep, low = text.partition("_")
    if not sep or not high.isdigit() or not low.isdigit() or not high.isascii():
        return None
    if not low.isascii():
        return None
    return int(high), int(low)


def media_type(content_type: str | None) -> str:
    """The media type alone, lowercase: ``media_type("Text/Plain; charset=x") == "text/plain"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    return media_type(content_type) == "application/json"


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def json_messages(body: bytes, *, allow_empty: bool) -> list[bytes]:
    """The messages of a JSON append: a top-level array is unwrapped one level.

    Each message is re-serialised compactly. Raises ``ProtocolFailure(400)`` for invalid JSON
    (strict UTF-8; NaN and Infinity are not JSON) and for ``[]`` unless ``allow_empty`` (a PUT).
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolFailure(400, "Invalid JSON") from None
    values = value if isinstance(value, list) else [value]
    if not values and not allow_empty:
        raise ProtocolFailure(400, "Empty arrays are not allowed")
    try:
        return [
            json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8") for v in values
        ]
    except (ValueError, RecursionError):
        raise ProtocolFailure(400, "Invalid JSON") from None


def parse_expires_at(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 / ISO 8601 timestamp, or None if it is not one."""
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass
class Producer:
    epoch: int
    last_seq: int


@dataclass
class Page:
    """What a read returns: the data between ``start`` and ``end`` (positions)."""

    start: int
    end: int
    #: JSON streams: one serialised message per item. Other streams: byte chunks.
    parts: list[bytes]

    @property
    def empty(self) -> bool:
        return self.end == self.start


@dataclass
class Stream:
    """One stream. Its own records start at ``base``; a fork reads below it from ``source``."""

    path: str
    content_type: str
    json: bool
    ttl: int | None
    expires_at: str | None
    expires_at_ts: float | None
    #: The TTL and Expires-At the creating PUT asked for (a fork may inherit others).
    requested_ttl: int | None = None
    requested_expires_at: str | None = None
    base: int = 0
    #: Record i covers positions [starts[i], starts[i] + weight); its data is bytes or messages.
    starts: list[int] = field(default_factory=list)
    records: list[bytes | list[bytes]] = field(default_factory=list)
    tail: int = 0
    last_access: float = field(default_factory=time.monotonic)
    closed: bool = False
    closed_by: tuple[str, int, int] | None = None
    producers: dict[str, Producer] = field(default_factory=dict)
    last_stream_seq: str | None = None
    source: Stream | None = None
    forked_from: str | None = None
    fork_offset: str | None = None
    fork_sub_offset: int = 0
    refcount: int = 0
    soft_deleted: bool = False
    waiters: set[anyio.Event] = field(default_factory=set)

    @property
    def next_offset(self) -> str:
        return format_offset(self.tail)

    def add_record(self, data: bytes | list[bytes]) -> None:
        if not data:
            return
        self.starts.append(self.tail)
        self.records.append(data)
        self.tail += len(data)

    def notify(self) -> None:
        """Wake everyone waiting on this stream (long-polls, SSE)."""
        waiters, self.waiters = self.waiters, set()
        for event in waiters:
            event.set()

    def expired(self, now: float, wall: float) -> bool:
        if self.expires_at_ts is not None and (
            math.isnan(self.expires_at_ts) or wall >= self.expires_at_ts
        ):
            return True
        return self.ttl is not None and now >= self.last_access + self.ttl

    def record_at(self, position: int, cap: int) -> tuple[int, bytes | list[bytes]] | None:
        """``(start, data)`` of the record holding ``position``, searching forks' sources too."""
        if self.source is not None and position < self.base:
            return self.source.record_at(position, min(cap, self.base))
        index = bisect.bisect_right(self.starts, position) - 1
        if index < 0 or position >= cap:
            return None
        start, data = self.starts[index], self.records[index]
        if position >= start + len(data):
            return None
        return start, data

    def read(self, position: int, cap: int, budget: Budget) -> Iterator[bytes]:
        """The data from ``position`` up to ``cap``, as much as ``budget`` allows, as parts."""
        if self.source is not None and position < self.base:
            inner_cap = min(cap, self.base)
            yield from self.source.read(position, inner_cap, budget)
            position = inner_cap
            if budget.exhausted or position >= cap:
                return
        index = max(0, bisect.bisect_right(self.starts, position) - 1)
        while index < len(self.records) and not budget.exhausted:
            start, data = self.starts[index], self.records[index]
            if start >= cap:
                return
            lo, hi = max(position - start, 0), min(len(data), cap - start)
            if hi > lo:
                if isinstance(data, list):
                    for message in data[lo:hi] if lo or hi < len(data) else data:
                        if not budget.take_message(len(message)):
                            return
                        yield message
                else:
                    size = budget.take_bytes(hi - lo)
                    yield data[lo : lo + size] if lo or lo + size < len(data) else data
            index += 1


class Budget:
    """How much one response may still carry: messages and bytes (None: no limit).

    A JSON message is never cut (the first one is taken whatever its size); an append of bytes
    counts as one message and may be cut anywhere.
    """

    def __init__(self, messages: int | None, size: int | None) -> None:
        self.messages = sys.maxsize if messages is None else messages
        self.bytes = sys.maxsize if size is None else size
        self.taken = 0

    @property
    def exhausted(self) -> bool:
        return self.messages <= 0 or self.bytes <= 0

    def take_message(self, size: int) -> bool:
        if self.messages <= 0 or (size > self.bytes and self.taken):
            self.messages = 0
            return False
        self.messages -= 1
        self.bytes -= size
        self.taken += 1
        return True

    def take_bytes(self, size: int) -> int:
        size = min(size, self.bytes)
        self.messages -= 1
        self.bytes -= size
        self.taken += 1
        return size


def _safe_int(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_SAFE_INTEGER else None


@dataclass
class CreateRequest:
    path: str
    content_type: str | None
    ttl: int | None
    expires_at: str | None
    closed: bool
    body: bytes
    forked_from: str | None
    fork_offset: str | None
    fork_sub_offset: int | None


@dataclass
class AppendOutcome:
    """What an append or close did; :mod:`._server` turns it into status and headers."""

    status: int
    headers: dict[str, str]
    #: Data was added (not a duplicate, not a close alone).
    appended: bool = False


class Store:
    """All streams of one server, by path."""

    def __init__(self) -> None:
        self.streams: dict[str, Stream] = {}

    # -- lookup and lifetime ----------------------------------------------------------------

    def get(self, path: str) -> Stream | None:
        """The stream at ``path`` (soft-deleted ones too), dropping it if it expired."""
        stream = self.streams.get(path)
        if stream is None:
            return None
        if stream.expired(time.monotonic(), time.time()):
            if stream.refcount > 0:
                stream.soft_deleted = True
                return stream
            self._remove(path)
            return None
        return stream

    def live(self, path: str) -> Stream:
        """The stream at ``path``; 404 if there is none, 410 if it is soft-deleted."""
        stream = self.get(path)
        if stream is None:
            raise ProtocolFailure(404, "Stream not found")
        if stream.soft_deleted:
            raise ProtocolFailure(410, "Stream is gone")
        return stream

    @staticmethod
    def touch(stream: Stream) -> None:
        """Reset a sliding TTL: reads and writes do, HEAD does not."""
        stream.last_access = time.monotonic()

    def delete(self, path: str) -> None:
        stream = self.live(path)
        if stream.refcount > 0:
            stream.soft_deleted = True
            stream.notify()
            return
        self._remove(path)

    def _remove(self, path: str) -> None:
        stream = self.streams.pop(path, None)
        if stream is None:
            return
        stream.notify()
        source = stream.source
        if source is not None and stream.forked_from is not None:
            source.refcount = max(0, source.refcount - 1)
            if (
                source.refcount == 0
                and source.soft_deleted
                and self.streams.get(stream.forked_from) is source
            ):
                self._remove(stream.forked_from)

    def clear(self) -> None:
        for path in list(self.streams):
            self.streams.pop(path).notify()

    # -- create -----------------------------------------------------------------------------

    def create(self, request: CreateRequest) -> tuple[Stream, bool]:
        """Create a stream, or find the identical one: ``(stream, created)``."""
        existing = self.get(request.path)
        if existing is not None:
            if existing.soft_deleted:
                raise ProtocolFailure(
                    409, "stream was deleted but still has active forks; path cannot be reused"
                )
            if self._same_config(existing, request):
                return existing, False
            raise ProtocolFailure(409, "Stream already exists with different configuration")

        source: Stream | None = None
        base = 0
        content_type = request.content_type
        ttl, expires_at = request.ttl, request.expires_at
        fork_offset: str | None = None
        sub = request.fork_sub_offset or 0
        if request.forked_from:
            source = self.get(request.forked_from)
            if source is None:
                raise ProtocolFailure(404, "Source stream not found")
            if source.soft_deleted:
                raise ProtocolFailure(409, "source stream was deleted but still has active forks")
            if content_type and media_type(content_type) != media_type(source.content_type):
                raise ProtocolFailure(409, "Content type mismatch with source stream")
            content_type = content_type or source.content_type
            if request.fork_offset is None:
                base = source.tail
            else:
                parsed = parse_offset(request.fork_offset)
                if parsed is None or parsed > (0, source.tail):
                    raise ProtocolFailure(400, "Fork offset beyond source stream length")
                base = parsed[1]
            fork_offset = format_offset(base)
            if sub > 0:
                found = source.record_at(base, source.tail)
                if found is None:
                    raise ProtocolFailure(400, "Invalid fork sub-offset")
                start, data = found
                if sub > start + len(data) - base:
                    raise ProtocolFailure(400, "Invalid fork sub-offset")
                base += sub
            if ttl is None and expires_at is None:
                ttl, expires_at = source.ttl, source.expires_at
        content_type = content_type or "application/octet-stream"
        stream = Stream(
            path=request.path,
            content_type=content_type,
            json=is_json(content_type),
            ttl=ttl,
            expires_at=expires_at,
            expires_at_ts=parse_expires_at(expires_at) if expires_at else None,
            requested_ttl=request.ttl,
            requested_expires_at=request.expires_at,
            base=base,
            tail=base,
            closed=request.closed,
            source=source,
            forked_from=request.forked_from or None,
            fork_offset=fork_offset,
            fork_sub_offset=sub,
        )
        if request.body:
            if stream.json:
                stream.add_record(json_messages(request.body, allow_empty=True))
            else:
                stream.add_record(request.body)
        if source is not None:
            source.refcount += 1
        self.streams[request.path] = stream
        return stream, True

    @staticmethod
    def _same_config(stream: Stream, request: CreateRequest) -> bool:
        inherits_type = bool(request.forked_from) and not request.content_type
        return (
            (
                inherits_type
                or (media_type(request.content_type) or "application/octet-stream")
                == media_type(stream.content_type)
            )
            and request.ttl == stream.requested_ttl
            and request.expires_at == stream.requested_expires_at
            and request.closed == stream.closed
            and (request.forked_from or None) == stream.forked_from
            and (
                request.fork_offset is None
                or parse_offset(request.fork_offset) == parse_offset(stream.fork_offset or "")
            )
            and (request.fork_sub_offset or 0) == stream.fork_sub_offset
        )

    # -- append and close -------------------------------------------------------------------

    def append(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str | None,
        seq: str | None,
        close: bool,
        producer: tuple[str, int, int] | None,
    ) -> AppendOutcome:
        """Append ``body`` (and close if asked). An empty ``body`` with ``close`` only closes."""
        stream = self.live(path)
        closed_headers = {"stream-next-offset": stream.next_offset, "stream-closed": "true"}
        if stream.closed:
            if producer is not None and stream.closed_by == producer:
                return AppendOutcome(204, {**closed_headers, **_echo(producer[1], producer[2])})
            if not body and producer is None:
                return AppendOutcome(204, closed_headers)
            raise ProtocolFailure(409, "Stream is closed", closed_headers)
        if body and media_type(content_type) != media_type(stream.content_type):
            raise ProtocolFailure(409, "Content-type mismatch")

        accepted: Producer | None = None
        if producer is not None:
            producer_id, epoch, producer_seq = producer
            state = stream.producers.get(producer_id)
            if state is None:
                if producer_seq != 0:
                    raise _gap(0, producer_seq)
                accepted = Producer(epoch, 0)
            elif epoch < state.epoch:
                raise ProtocolFailure(
                    403, "Stale producer epoch", {"producer-epoch": str(state.epoch)}
                )
            elif epoch > state.epoch:
                if producer_seq != 0:
                    raise ProtocolFailure(400, "New epoch must start with sequence 0")
                accepted = Producer(epoch, 0)
            elif producer_seq <= state.last_seq:
                headers = _echo(epoch, state.last_seq)
                if not body:  # a close-only retry on an open stream (reference behaviour)
                    headers.update(closed_headers)
                return AppendOutcome(204, headers)
            elif producer_seq == state.last_seq + 1:
                accepted = Producer(epoch, producer_seq)
            else:
                raise _gap(state.last_seq + 1, producer_seq)

        last_seq = stream.last_stream_seq
        if body and seq is not None and last_seq is not None and seq <= last_seq:
            raise ProtocolFailure(409, "Sequence conflict")

        data: bytes | list[bytes] = body
        if body and stream.json:
            data = json_messages(body, allow_empty=False)

        # Commit: nothing above changed the stream.
        stream.add_record(data)
        if producer is not None and accepted is not None:
            stream.producers[producer[0]] = accepted
        if body and seq is not None:
            stream.last_stream_seq = seq
        if close:
            stream.closed = True
            stream.closed_by = producer
        self.touch(stream)
        stream.notify()

        headers = {"stream-next-offset": stream.next_offset}
        if close:
            headers["stream-closed"] = "true"
        appended = bool(data)
        if producer is not None:
            headers.update(_echo(producer[1], producer[2]))
            return AppendOutcome(204 if not body else 200, headers, appended)
        return AppendOutcome(204, headers, appended)

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def page(stream: Stream, position: int, budget: Budget) -> Page:
        """What ``budget`` allows from ``position`` (``Budget(None, None)``: the whole rest)."""
        if position >= stream.tail:
            return Page(start=position, end=position, parts=[])
        parts = list(stream.read(position, stream.tail, budget))
        size = len(parts) if stream.json else sum(len(p) for p in parts)
        return Page(start=position, end=position + size, parts=parts)

    def changed(self, stream: Stream, position: int) -> bool:
        """Whether ``stream`` has data past ``position``, is closed or is gone."""
        return (
            stream.tail > position
            or stream.closed
            or stream.soft_deleted
            or self.streams.get(stream.path) is not stream
        )

    async def wait(
        self,
        stream: Stream,
        position: int,
        timeout: float,
        *,
        also: set[anyio.Event] | None = None,
    ) -> bool:
        """Wait until ``stream`` has data past ``position``, closes or goes; False on timeout.

        ``also``: another set of waiters whose owner may wake this wait (it then returns True).
        """
        event = anyio.Event()
        stream.waiters.add(event)
        if also is not None:
            also.add(event)
        try:
            if self.changed(stream, position):
                return True
            with anyio.move_on_after(timeout):
                await event.wait()
                return True
            return False
        finally:
            stream.waiters.discard(event)
            if also is not None:
                also.discard(event)


def _echo(epoch: int, seq: int) -> dict[str, str]:
    return {"producer-epoch": str(epoch), "producer-seq": str(seq)}


def _gap(expected: int, received: int) -> ProtocolFailure:
    return ProtocolFailure(
        409,
        "Producer sequence gap",
        {"producer-expected-seq": str(expected), "producer-received-seq": str(received)},
    )


def parse_producer(
    producer_id: str | None, epoch: str | None, seq: str | None
) -> tuple[str, int, int] | None:
    """The producer tuple of a request, None without producer headers; 400 if partial or bad."""
    if producer_id is None and epoch is None and seq is None:
        return None
    if producer_id is None or epoch is None or seq is None:
        raise ProtocolFailure(
            400,
            "All producer headers (Producer-Id, Producer-Epoch, Producer-Seq) "
            "must be provided together",
        )
    if producer_id == "":
        raise ProtocolFailure(400, "Invalid Producer-Id: must not be empty")
    epoch_value = _safe_int(epoch)
    if epoch_value is None:
        raise ProtocolFailure(400, "Invalid Producer-Epoch: must be a non-negative integer")
    seq_value = _safe_int(seq)
    if seq_value is None:
        raise ProtocolFailure(400, "Invalid Producer-Seq: must be a non-negative integer")
    return producer_id, epoch_value, seq_value
