"""Delivering one producer batch: the worker a :class:`~._batcher.Batcher` starts per batch.

A worker resends its batch with the same tuple and the same bytes after a
retryable failure (without waiting: its place in the order is lost anyway), and
counts 200 and 204 (duplicate) as success. A 409 sequence gap means an earlier
batch has not landed yet: the worker waits until no earlier batch is in flight
(their responses, not just their bodies) and sends again.

A 403 fences the producer, or with auto-claim hands the batch back to be sent
again in the server's epoch + 1. A closed or gone stream fails this batch and
every later one. A failure that is not retryable, or whose retries ran out,
fails the batch, and the batches behind it are renumbered into a new epoch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from . import _protocol as p
from . import _retry
from ._batch import Batch, when_body_written
from ._errors import (
    DurableStreamError,
    GoneError,
    NotFoundError,
    ProducerSequenceGapError,
    StaleEpochError,
    StreamClosedError,
    error_for_response,
)
from ._retry import is_retryable

if TYPE_CHECKING:
    from ._batcher import Batcher

__all__ = ["deliver", "post"]

logger = logging.getLogger("durable_streams")


async def deliver(batcher: Batcher, batch: Batch) -> None:
    """Send ``batch`` until it is acknowledged, fails, or is handed back for renumbering."""
    try:
        await _deliver(batcher, batch)
    finally:
        if batch.written is not None:  # never leave the next batch waiting
            batch.written.set()
        batcher.in_flight.discard(batch.seq)
        batcher.notify()


async def _deliver(batcher: Batcher, batch: Batch) -> None:
    backoff: _retry.Backoff | None = None
    gap_seen = False
    while True:
        try:
            response = await post(batcher, batch)
        except ProducerSequenceGapError:
            batcher.sequence_gaps += 1
            if not gap_seen:
                batcher.narrow()
            await batcher.wait_for(lambda: min(batcher.in_flight) >= batch.seq)
            if batcher.epoch_change or batcher.claim_epoch is not None or gap_seen:
                # An earlier batch failed or moved to a new epoch, or the server
                # forgot this producer (a gap with nothing earlier pending).
                batcher.requeue(batch)
                return
            gap_seen = True
            continue
        except StaleEpochError as error:
            if batcher.auto_claim and error.current_epoch is not None:
                if batch.maybe_stored:
                    logger.warning(
                        "producer %r: seq %d of epoch %d was fenced after an ambiguous "
                        "failure; it is sent again in the new epoch and may be stored twice",
                        batcher.producer_id,
                        batch.seq,
                        batch.epoch,
                    )
                batcher.requeue(batch, claim=error.current_epoch + 1)
                return
            batcher.fatal = error
            await batcher.fail(batch, error)
            return
        except (StreamClosedError, NotFoundError, GoneError) as error:
            # The stream is closed or gone: this and every later batch fail at once.
            batcher.fatal = error
            await batcher.fail(batch, error)
            return
        except DurableStreamError as error:
            delay = None
            if is_retryable(error):
                backoff = backoff or batcher.retry.backoff()
                delay = backoff.next_delay(error)
            if delay is None:
                # Later batches of this epoch cannot land after the hole: renumber them.
                batcher.epoch_change = True
                await batcher.fail(batch, error)
                return
            batch.maybe_stored = True
            batcher.retries += 1
            logger.debug(
                "producer %r: retrying seq %d in %.3fs: %s",
                batcher.producer_id,
                batch.seq,
                delay,
                error,
            )
            await _retry._sleep(delay)
            continue
        batcher.ack(batch, response, gap_seen=gap_seen)
        return


async def post(batcher: Batcher, batch: Batch) -> httpx.Response:
    """One attempt; a first attempt writes its body after the previous batch's (seq order)."""
    protocol = {
        p.PRODUCER_ID: batcher.producer_id,
        p.PRODUCER_EPOCH: str(batch.epoch),
        p.PRODUCER_SEQ: str(batch.seq),
    }
    if batch.body:
        protocol[p.CONTENT_TYPE] = batcher.content_type
    if batch.close:
        protocol[p.STREAM_CLOSED] = p.TRUE
    operation = "producer close" if batch.close else "producer append"
    request = await batcher.transport.build(
        "POST",
        protocol_headers=protocol,
        headers=batcher.headers,
        params=batcher.params,
        content=batch.body,
    )
    written = batch.written
    if written is not None:
        request.extensions["trace"] = when_body_written(written)
    after, batch.after = batch.after, None
    if after is not None:
        await after.wait()
    try:
        response = await batcher.transport.send(request, operation=operation)
    finally:
        if written is not None:  # the attempt ended: whatever follows may go
            written.set()
    if response.status_code not in (200, 204):
        raise error_for_response(response, operation=operation, body=response.content)
    return response
