"""Injected faults, with the reference server's rules: one fault per path, used up by count.

A fault triggers on requests to its exact path (any method unless ``method`` is set). A
``probability`` miss does not use up ``count``. Effects apply in the reference server's order:
delay, then drop, then status, then body changes (truncate, corrupt, an extra SSE event).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from durable_streams import InvalidArgumentError


@dataclass
class Fault:
    """One injected fault; see :meth:`durable_streams.testing.InMemoryServer.inject`."""

    count: int = 1
    status: int | None = None
    retry_after: int | None = None
    delay: float = 0.0
    jitter: float = 0.0
    drop: bool = False
    truncate: int | None = None
    corrupt: bool = False
    probability: float | None = None
    method: str | None = None
    sse_event: tuple[str, str] | None = None

    @property
    def changes_body(self) -> bool:
        return self.truncate is not None or self.corrupt or self.sse_event is not None

    def apply_to_body(self, body: bytes) -> bytes:
        """Truncate and/or corrupt a whole GET 200 body, as the reference server does."""
        if self.truncate is not None and len(body) > self.truncate:
            body = body[: self.truncate]
        if self.corrupt and body:
            corrupted = bytearray(body)
            corrupted[0] = ord("X")
            if len(corrupted) > 1:
                corrupted[1] = ord("Y")
            for _ in range(max(1, len(corrupted) // 10)):
                corrupted[random.randrange(len(corrupted))] = ord("Z")
            body = bytes(corrupted)
        return body


class Faults:
    """The faults of one server, by path."""

    def __init__(self) -> None:
        self.by_path: dict[str, Fault] = {}

    def add(self, path: str, fault: Fault) -> None:
        if not path:
            raise InvalidArgumentError("a fault needs a path", field="path")
        if not (fault.status is not None or fault.delay or fault.drop or fault.changes_body):
            raise InvalidArgumentError(
                "a fault needs at least one of status, delay, drop, truncate, corrupt, sse_event"
            )
        self.by_path[path] = fault

    def clear(self) -> None:
        self.by_path.clear()

    def consume(self, path: str, method: str) -> Fault | None:
        """The fault this request triggers (using one of its ``count``), or None."""
        fault = self.by_path.get(path)
        if fault is None:
            return None
        if fault.method is not None and fault.method.upper() != method.upper():
            return None
        if fault.probability is not None and random.random() > fault.probability:
            return None
        fault.count -= 1
        if fault.count <= 0:
            del self.by_path[path]
        return fault


def fault_from_json(body: bytes) -> tuple[str, Fault]:
    """``(path, fault)`` from a ``POST /_test/inject-error`` body (the reference's field names).

    Raises ``ValueError`` with the reference server's message when the body is refused.
    """
    try:
        config = json.loads(body)
    except ValueError:
        raise ValueError("Invalid JSON body") from None
    if not isinstance(config, dict):
        raise ValueError("Invalid JSON body")
    path = config.get("path")
    if not path or not isinstance(path, str):
        raise ValueError("Missing required field: path")
    if not (
        config.get("status") is not None
        or config.get("delayMs") is not None
        or config.get("dropConnection")
        or config.get("truncateBodyBytes") is not None
        or config.get("corruptBody")
        or config.get("injectSseEvent") is not None
    ):
        raise ValueError(
            "Must specify at least one fault type: status, delayMs, dropConnection, "
            "truncateBodyBytes, corruptBody, or injectSseEvent"
        )
    try:
        event: Any = config.get("injectSseEvent")
        fault = Fault(
            count=_opt_int(config.get("count")) or 1,
            status=_opt_int(config.get("status")),
            retry_after=_opt_int(config.get("retryAfter")),
            delay=float(config.get("delayMs") or 0) / 1000,
            jitter=float(config.get("jitterMs") or 0) / 1000,
            drop=bool(config.get("dropConnection")),
            truncate=_opt_int(config.get("truncateBodyBytes")),
            corrupt=bool(config.get("corruptBody")),
            probability=(
                float(config["probability"]) if config.get("probability") is not None else None
            ),
            method=str(config["method"]) if config.get("method") else None,
            sse_event=(str(event["eventType"]), str(event["data"])) if event is not None else None,
        )
    except (TypeError, ValueError, KeyError):
        raise ValueError("Invalid JSON body") from None
    return path, fault


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
