"""One producer batch, the ``send()`` callers waiting for it, and its wire order.

A batch's first attempt starts writing its body only once the previous batch's
body is fully written to its connection (or that attempt ended), so bodies go
on the wire in seq order while responses overlap. httpx has no "request
written" hook; httpcore's ``trace`` request extension reports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import httpx

from ._errors import DurableStreamError
from ._models import ProducerAck

__all__ = ["Batch", "Waiter", "when_body_written"]


class Waiter:
    """One ``send()`` caller waiting for the batch that carries its item."""

    __slots__ = ("ack", "done", "error", "raised")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ack: ProducerAck | None = None
        self.error: DurableStreamError | None = None
        self.raised = False  # send() raised ``error`` to its caller (not cancelled first)


class Batch:
    """One request's worth of items, with the tuple it is currently sent under."""

    __slots__ = (
        "after",
        "body",
        "close",
        "counted_bytes",
        "epoch",
        "error",
        "id",
        "item_count",
        "maybe_stored",
        "response",
        "seq",
        "waiters",
        "written",
    )

    def __init__(self, id: int, body: bytes, item_count: int, waiters: list[Waiter]) -> None:
        self.id = id  # append order; never changes when the batch is renumbered
        self.body = body
        self.item_count = item_count
        self.counted_bytes = 0  # its share of max_buffered_bytes
        self.waiters = waiters
        self.close = False
        self.epoch = -1
        self.seq = -1
        self.maybe_stored = False  # an attempt under the current tuple failed ambiguously
        self.response: httpx.Response | None = None
        self.error: DurableStreamError | None = None
        # Set once this dispatch's first attempt wrote its body or ended; the next
        # batch's first attempt waits for it (``after``) so bodies arrive in seq order.
        self.written: anyio.Event | None = None
        self.after: anyio.Event | None = None


def when_body_written(written: anyio.Event) -> Callable[[str, object], Awaitable[None]]:
    """An httpcore ``trace`` callback that sets ``written`` once the body is on the wire.

    httpx has no hook for "request written"; the trace extension reports it
    (``http11.send_request_body.complete``, or ``.failed``). Other transports
    never call it, and the attempt's end sets the event instead.
    """

    async def trace(name: str, info: object) -> None:
        if name.endswith(("send_request_body.complete", "send_request_body.failed")):
            written.set()

    return trace
