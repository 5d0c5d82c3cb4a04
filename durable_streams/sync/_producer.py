"""The sync ``IdempotentProducer``: one async producer on the shared loop, for many threads."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from durable_streams import CloseResult, ProducerAck, ProducerError, ProducerStats
from durable_streams import IdempotentProducer as AsyncIdempotentProducer
from durable_streams._codec import items_of

from ._handle import StreamHandle
from ._portal import call, get_portal, register_producer, run_sync, unregister_producer

__all__ = ["IdempotentProducer"]

_MISSING: Any = object()


class IdempotentProducer:
    """Batched, pipelined, exactly-once appends for code that is not async; thread-safe.

    Wraps :class:`durable_streams.IdempotentProducer` (same options, errors and
    guarantees), which runs on the process's background event loop, so any
    number of threads may call :meth:`append` and :meth:`send` on one producer.
    ``append()`` queues and returns without a round trip to the loop thread
    (``ProducerBufferFullError`` when ``max_buffered_bytes`` are pending);
    ``send()`` waits for the item's acknowledgement; ``flush()`` for everything
    so far. Leaving the ``with`` block flushes and stops (also on
    ``KeyboardInterrupt``); a producer still open when the interpreter exits is
    flushed then. ``on_error`` hooks run on the background thread.

    Example::

        from durable_streams.sync import IdempotentProducer, StreamHandle

        with StreamHandle(url) as handle, IdempotentProducer(handle, "worker-1") as producer:
            for event in events:
                producer.append(event)
            producer.flush()
    """

    def __init__(self, handle: StreamHandle, producer_id: str, **options: Any) -> None:
        """``options`` are those of :class:`durable_streams.IdempotentProducer`
        (``epoch``, ``auto_claim``, ``linger_ms``, ``max_batch_bytes``, ...)."""
        self._portal = get_portal()
        self._producer = AsyncIdempotentProducer(handle.async_handle, producer_id, **options)
        self._context: AbstractContextManager[AsyncIdempotentProducer] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the producer (``with`` does this); stop it with :meth:`close` or :meth:`detach`.

        Example::

            producer.start()
            producer.append(b"x")
            producer.detach()
        """
        if self._context is not None:
            raise ProducerError("the producer was already started")
        # The async producer's task group must be entered and left by one task: the
        # portal runs its ``async with`` in a task that waits for the sync exit.
        context = self._portal.wrap_async_context_manager(self._producer)
        context.__enter__()
        self._context = context
        register_producer(self)

    def __enter__(self) -> IdempotentProducer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave(exc_type, exc, tb)

    def _leave(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        context, self._context = self._context, None
        unregister_producer(self)
        if context is not None:
            context.__exit__(exc_type, exc, tb)

    def detach(self) -> None:
        """Flush, then stop without closing the stream (``ProducerFlushError`` if batches failed).

        Example::

            producer.detach()
        """
        try:
            call(self._producer.detach)
        finally:
            self._leave()

    def close(self, *, final: Any = _MISSING) -> CloseResult:
        """Flush, then close the stream; ``final=`` sends one last item with the close.

        Example::

            print(producer.close(final={"type": "done"}).final_offset)
        """
        try:
            if final is _MISSING:
                return call(self._producer.close)
            return call(self._producer.close, final=final)
        finally:
            self._leave()

    def flush_at_exit(self) -> None:
        """Flush and stop: what interpreter exit does with a producer left open."""
        if self._context is not None:
            self.detach()

    # -- writing -----------------------------------------------------------------------------

    def append(self, item: Any) -> None:
        """Queue one item (encoding errors and ``ProducerBufferFullError`` are raised here).

        Never waits for the background loop: the item is checked and encoded on
        the calling thread, then handed over
        (:meth:`durable_streams.IdempotentProducer.append_from_thread`), so it
        may be called from anywhere, a running event loop included.

        Example::

            producer.append({"type": "click", "x": 3})
        """
        self._producer.append_from_thread(item)

    def append_many(self, items: Iterable[Any]) -> None:
        """Queue items stored together: one batch, never split (a State Protocol transaction).

        Example::

            producer.append_many(tx.messages)
        """
        run_sync(self._producer.append_many, items_of(items))

    def send_many(self, items: Iterable[Any]) -> ProducerAck:
        """:meth:`append_many`, waiting for room, then for the group's acknowledgement.

        Example::

            print(producer.send_many(tx.messages).offset)
        """
        return call(self._producer.send_many, items_of(items))

    def send(self, item: Any) -> ProducerAck:
        """Queue one item, waiting for buffer room, and return once it is acknowledged.

        Example::

            print(producer.send({"type": "order"}).offset)
        """
        return call(self._producer.send, item)

    def flush(self) -> None:
        """Wait until every item appended so far is acknowledged (``ProducerFlushError`` if not).

        Example::

            producer.flush()
        """
        call(self._producer.flush)

    def wait_for_capacity(self, nbytes: int = 1) -> None:
        """Wait until ``nbytes`` more fit in ``max_buffered_bytes``.

        Example::

            producer.wait_for_capacity(len(item))
        """
        call(self._producer.wait_for_capacity, nbytes)

    def restart(self) -> None:
        """Flush, then continue in epoch + 1 from seq 0.

        Example::

            producer.restart()
        """
        call(self._producer.restart)

    # -- state ---------------------------------------------------------------------------------

    @property
    def producer_id(self) -> str:
        """The ``Producer-Id`` sent with every request."""
        return self._producer.producer_id

    @property
    def epoch(self) -> int:
        """The current ``Producer-Epoch``."""
        return self._producer.epoch

    @property
    def pending(self) -> int:
        """Items appended and not yet acknowledged or failed."""
        return self._producer.pending

    @property
    def buffered_bytes(self) -> int:
        """Request-body bytes of the pending items (at most ``max_buffered_bytes``)."""
        return self._producer.buffered_bytes

    @property
    def stats(self) -> ProducerStats:
        """Counters: acknowledged messages and batches, duplicates, failures, retries."""
        return self._producer.stats

    def __repr__(self) -> str:
        return f"sync.{self._producer!r}"
