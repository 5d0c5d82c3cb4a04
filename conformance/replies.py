"""The adapter protocol's message types, and how an exception becomes an error reply."""

from __future__ import annotations

import sys
from typing import Any

import durable_streams as ds

Command = dict[str, Any]
Reply = dict[str, Any]


class Failure(Exception):
    """An error reply the adapter itself decides (unknown command, bad input, deadline)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def error_reply(kind: str, command: Command, exc: Exception) -> Reply:
    """The protocol's error reply for an exception, mapped by the SDK's error codes."""
    if isinstance(exc, ds.ProducerFlushError) and exc.failures:
        exc = exc.failures[0].error
    where = f"{kind} {command.get('path', '')}".rstrip()
    status: int | None = None
    if isinstance(exc, Failure):
        code, status, message = exc.code, exc.status, str(exc)
    elif isinstance(exc, ds.EmptyAppendError):
        # The SDK refuses it without sending; the suite expects the server's answer (400).
        code, status, message = "UNEXPECTED_STATUS", 400, f"{where}: {exc}"
    elif isinstance(exc, ds.DurableStreamError):
        code, status, message = exc.code, exc.status, f"{where}: {exc}"
    elif isinstance(exc, KeyError):
        code, message = "INVALID_ARGUMENT", f"{where}: the command lacks field {exc}"
    else:
        code, message = "INTERNAL_ERROR", f"{where}: {type(exc).__name__}: {exc}"
        print(f"adapter: {message}", file=sys.stderr, flush=True)
    reply: Reply = {"type": "error", "success": False, "commandType": kind, "errorCode": code}
    reply["message"] = message
    if status is not None:
        reply["status"] = status
    if isinstance(exc, ds.ProducerSequenceGapError):
        details = {"producerExpectedSeq": exc.expected_seq, "producerReceivedSeq": exc.received_seq}
        reply["details"] = {k: v for k, v in details.items() if v is not None}
    return reply
