"""Read-result bookkeeping: what a ``read`` command reports, built up batch by batch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from replies import Reply

import durable_streams as ds


def is_json_type(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


@dataclass
class ReadOutcome:
    """What a ``read`` command reports, built up batch by batch."""

    offset: str
    status: int = 200
    chunks: list[Reply] = field(default_factory=list)
    up_to_date: bool = False
    closed: bool = False
    cursor: str | None = None
    json_mode: bool = False
    # Catch-up reads report one chunk: the whole body, or one array of all messages.
    body: bytearray = field(default_factory=bytearray)
    items: list[Any] = field(default_factory=list)

    def take(self, batch: ds.Batch, *, live: bool) -> None:
        """Record a batch: its state, and its data as a chunk (live) or into the body."""
        self.offset = batch.offset
        self.up_to_date = batch.up_to_date
        self.closed = batch.closed
        if batch.cursor:
            self.cursor = batch.cursor
        if not live:
            if self.json_mode:
                self.items.extend(batch.items)
            else:
                self.body += batch.data
            return
        if self.json_mode:
            items = batch.items
            text = json.dumps(items, separators=(",", ":"), ensure_ascii=False) if items else ""
        else:
            text = batch.data.decode("utf-8", "replace")
        if text:  # never an empty chunk
            self.chunks.append({"data": text, "offset": batch.offset})

    def finish_catch_up(self) -> None:
        if self.json_mode and self.items:
            text = json.dumps(self.items, separators=(",", ":"), ensure_ascii=False)
        else:
            text = self.body.decode("utf-8", "replace")
        if text:
            self.chunks = [{"data": text, "offset": self.offset}]

    def reply(self) -> Reply:
        reply: Reply = {
            "status": self.status,
            "chunks": self.chunks,
            "offset": self.offset,
            "upToDate": self.up_to_date,
            "streamClosed": self.closed,
        }
        if self.cursor:
            reply["cursor"] = self.cursor
        return reply
