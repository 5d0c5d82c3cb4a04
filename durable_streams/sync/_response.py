"""The sync ``StreamResponse``: a read session consumed with plain iterators.

An iterator runs its async counterpart on the shared loop as one task (a
*pump*) that hands items to the calling thread through a bounded buffer, so
the per-item cost is a lock, not a round trip between threads. What the
response reports (``offset``, ``position``, ...) is what the calling thread
has received, never what the pump has read ahead.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import anyio
import httpx
import pydantic

from durable_streams import Batch, LiveMode, Position, UsageError
from durable_streams import StreamResponse as AsyncStreamResponse

from ._portal import call, get_portal, remaining, run_sync, stop_cancelled, timed_out

__all__ = ["StreamResponse"]

T = TypeVar("T")

#: How many items (JSON items, byte chunks) the pump may read ahead of the calling thread.
ITEM_READ_AHEAD = 1024
#: Batches are whole responses, possibly large: read at most this many ahead.
BATCH_READ_AHEAD = 2


@dataclass(frozen=True, slots=True)
class _Handed:
    """What a response reports after an item was handed out."""

    offset: str
    position: Position
    cursor: str | None
    up_to_date: bool
    closed: bool


def _snapshot(res: AsyncStreamResponse) -> _Handed:
    return _Handed(res.offset, res.position, res.cursor, res.up_to_date, res.closed)


class _End:
    """The pump's source is exhausted (``error`` None) or failed."""

    __slots__ = ("error", "state")

    def __init__(self, error: BaseException | None, state: _Handed | None) -> None:
        self.error = error
        self.state = state


class _Pump(Generic[T]):
    """Runs one async iterator on the shared loop, handing items to one consuming thread.

    The buffer holds at most ``limit`` items: the pump then waits until the
    consumer has taken half of them.
    """

    def __init__(
        self, source: AsyncIterator[T], snapshot: Callable[[], _Handed], limit: int
    ) -> None:
        self._source = source
        self._snapshot = snapshot
        self._limit = limit
        self._cond = threading.Condition()
        self._buffer: deque[tuple[T, _Handed]] = deque()
        self._end: _End | None = None
        self._space: anyio.Event | None = None  # set while the pump waits for room
        self._portal = get_portal()
        self._done = threading.Event()
        self._stopped = False  # stop() ended it: the iteration is over, not failed
        self._future = self._portal.start_task_soon(self._run)

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            async for item in self._source:
                entry = (item, self._snapshot())
                space = None
                with self._cond:
                    self._buffer.append(entry)
                    self._cond.notify()
                    if len(self._buffer) >= self._limit:
                        space = self._space = anyio.Event()
                if space is not None:
                    await space.wait()
        except anyio.get_cancelled_exc_class():
            # The loop stopping at exit: a consumer still waiting must not take this for
            # the end of the stream. (After stop() the iteration is simply over.)
            if not self._stopped:
                error = UsageError("the read was cancelled (the sync event loop is stopping)")
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
            with self._cond:
                # After stop() the source was cut short: its state is ahead of what
                # the consumer received, so it must not become the response's.
                ended = error is None and not self._stopped
                self._end = _End(error, self._snapshot() if ended else None)
                self._cond.notify()
            self._done.set()

    def next(self) -> tuple[T, _Handed] | _End:
        """The next item and the state after it, or the end (waits; honours deadlines)."""
        if self._stopped:  # closed: what was read ahead is not handed out
            return _End(None, None)
        wake = None
        with self._cond:
            while not self._buffer and self._end is None:
                if not self._cond.wait(remaining()) and not self._buffer and self._end is None:
                    raise timed_out()
            if not self._buffer:
                assert self._end is not None
                return self._end
            entry = self._buffer.popleft()
            if self._space is not None and len(self._buffer) <= self._limit // 2:
                wake, self._space = self._space, None
        if wake is not None:
            run_sync(wake.set)
        return entry

    def stop(self) -> None:
        """Cancel the pump (if still running) and wait until its source is closed."""
        self._stopped = True
        if not self._done.is_set():
            stop_cancelled(self._future, self._done)


class StreamResponse:
    """A read session (from :meth:`StreamHandle.stream`), consumed with plain iterators.

    Iterate it for :class:`~durable_streams.Batch` objects, or use
    ``iter_bytes()``, ``iter_text()``, ``iter_json(model=...)`` or
    ``body()``/``text()``/``json()``; only one of them per response, as in the
    async API. ``offset`` and ``position`` say what *you* received, so they are
    safe to store and resume from. Leaving an iteration early (``break``, an
    exception, ``KeyboardInterrupt``, a :func:`fail_after` deadline) ends the
    read session and releases its connection.

    Example::

        with handle.stream(offset="-1", live="auto") as res:
            for batch in res:
                print(batch.items)
                saved = res.offset
    """

    def __init__(self, response: AsyncStreamResponse) -> None:
        self._res = response
        self._handed: _Handed | None = None
        self._pump: _Pump[Any] | None = None

    # -- state: what the calling thread received --------------------------------------

    @property
    def offset(self) -> str:
        """Offset after the last batch handed to you: persist it to resume from there."""
        return self._res.offset if self._handed is None else self._handed.offset

    @property
    def position(self) -> Position:
        """Where to resume to get exactly what follows what was handed to you.

        Example::

            for event in res.iter_json():
                handle_event(event)
                save(str(res.position))
        """
        return self._res.position if self._handed is None else self._handed.position

    @property
    def cursor(self) -> str | None:
        """The latest ``Stream-Cursor`` handed out."""
        return self._res.cursor if self._handed is None else self._handed.cursor

    @property
    def up_to_date(self) -> bool:
        """Whether the data handed out so far reached the stream's tail."""
        return self._res.up_to_date if self._handed is None else self._handed.up_to_date

    @property
    def closed(self) -> bool:
        """Whether the stream is closed and everything was handed out (EOF)."""
        return self._res.closed if self._handed is None else self._handed.closed

    @property
    def content_type(self) -> str | None:
        """The stream's content type."""
        return self._res.content_type

    @property
    def status(self) -> int | None:
        """HTTP status of the first response of the session."""
        return self._res.status

    @property
    def headers(self) -> httpx.Headers:
        """Headers of the latest response read (possibly ahead of what you received)."""
        return self._res.headers

    @property
    def url(self) -> str:
        """The stream URL (credentials redacted)."""
        return self._res.url

    @property
    def live(self) -> LiveMode:
        """The live mode the session was opened with."""
        return self._res.live

    def __repr__(self) -> str:
        return f"sync.StreamResponse({self.url!r}, offset={self.offset!r}, live={self.live!r})"

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """End the read session and release its connection.

        Example::

            res.close()
        """
        if self._pump is not None:
            self._pump.stop()
        call(self._res.aclose)

    def __enter__(self) -> StreamResponse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- consumption -----------------------------------------------------------------------

    def __iter__(self) -> Generator[Batch, None, None]:
        return self._drain(self._res.__aiter__(), BATCH_READ_AHEAD)

    def iter_bytes(self) -> Generator[bytes, None, None]:
        """The stream's bytes as they arrive, without buffering whole responses.

        Example::

            for chunk in res.iter_bytes():
                sink.write(chunk)
        """
        return self._drain(self._res.iter_bytes(), ITEM_READ_AHEAD)

    def iter_text(self) -> Generator[str, None, None]:
        """The stream's text as it arrives (UTF-8).

        Example::

            for text in res.iter_text():
                print(text, end="")
        """
        return self._drain(self._res.iter_text(), ITEM_READ_AHEAD)

    @overload
    def iter_json(self, model: None = None) -> Generator[Any, None, None]: ...
    @overload
    def iter_json(self, model: type[T] | pydantic.TypeAdapter[T]) -> Generator[T, None, None]: ...

    def iter_json(self, model: Any = None) -> Generator[Any, None, None]:
        """The items of a JSON stream one by one, validated by ``model`` if given.

        Example::

            for event in res.iter_json(model=ChatEvent):
                print(event.role, event.text)
        """
        return self._drain(self._res.iter_json(model), ITEM_READ_AHEAD)

    def body(self) -> bytes:
        """All data up to the tail (or EOF) as bytes; JSON streams give one JSON array.

        Example::

            data = handle.stream(live=False).body()
        """
        return call(self._res.body)

    def text(self) -> str:
        """All data up to the tail (or EOF), decoded as UTF-8.

        Example::

            text = handle.stream(live=False).text()
        """
        return call(self._res.text)

    def json(self) -> Any:
        """All items of a JSON stream up to the tail (a list), or the body parsed as JSON.

        Example::

            events = handle.stream(live=False).json()
        """
        return call(self._res.json)

    def _drain(self, source: AsyncIterator[T], limit: int) -> Generator[T, None, None]:
        """A generator over ``source`` (already claimed); the pump starts on its first item."""
        pump: _Pump[T] = _Pump(source, lambda: _snapshot(self._res), limit)
        self._pump = pump
        try:
            while True:
                got = pump.next()
                if isinstance(got, _End):
                    if got.state is not None:
                        self._handed = got.state
                    if got.error is not None:
                        raise got.error
                    return
                item, self._handed = got
                yield item
        finally:
            pump.stop()
