"""Output of the CLI: data on stdout (raw, JSON lines, pretty) and progress on stderr.

Rich is imported only for what needs it: pretty JSON and progress on a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType
from typing import Any, BinaryIO

import click

__all__ = ["Progress", "Writer", "is_tty", "output_mode"]

#: Bytes written to stdout before the writer passes them on (flushed at least per response).
BUFFER = 256 * 1024


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` (stdout, stderr) is a terminal."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def output_mode(requested: str | None, content_type: str | None, *, tty: bool) -> str:
    """The output mode for a stream: the one asked for, else by content type and terminal."""
    json_stream = content_type is not None and "json" in content_type.lower()
    if requested is None:
        if json_stream:
            return "pretty" if tty else "jsonl"
        return "raw"
    if requested in ("jsonl", "pretty") and not json_stream:
        if requested == "pretty":
            return "raw"
        raise click.UsageError(f"--output jsonl needs a JSON stream, this one is {content_type}")
    return requested


class Writer:
    """Writes what a read hands out to stdout in the chosen mode."""

    def __init__(self, mode: str, sink: BinaryIO) -> None:
        self.mode = mode
        self.items = mode in ("jsonl", "pretty")
        self._sink = sink
        self._pending: list[bytes] = []
        self._size = 0
        self._console: Any = None
        if mode == "pretty":
            from rich.console import Console

            self._console = Console(soft_wrap=True)

    def item(self, item: Any) -> int:
        """Write one JSON message; returns its size in bytes (as written)."""
        if self._console is not None:
            self.flush()
            text = json.dumps(item, ensure_ascii=False)
            self._console.print_json(text)
            return len(text)
        data = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self._add(data)
        return len(data)

    def raw(self, data: bytes) -> None:
        self._add(data)

    def _add(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= BUFFER:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._sink.write(b"".join(self._pending))
            self._pending.clear()
            self._size = 0
        self._sink.flush()


class Progress:
    """Messages, bytes and rate on stderr while a long read or write runs on a terminal."""

    def __init__(self, verb: str, *, unit: str, enabled: bool) -> None:
        self.verb = verb
        self.unit = unit
        self.enabled = enabled
        self.messages = 0
        self.bytes = 0
        self._started = time.monotonic()
        self._shown = 0.0
        self._live: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._live = Live(
                Text(""), console=Console(file=sys.stderr), transient=True, auto_refresh=False
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
            click.echo(self.line(), err=True)

    def add(self, messages: int, size: int) -> None:
        self.messages += messages
        self.bytes += size
        if self._live is None:
            return
        now = time.monotonic()
        if now - self._shown >= 0.2:
            from rich.text import Text

            self._shown = now
            self._live.update(Text(self.line()), refresh=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        mib = self.bytes / (1024 * 1024)
        return (
            f"{self.verb} {self.messages:,} {self.unit}, {mib:,.1f} MiB "
            f"in {elapsed:.1f} s ({self.messages / elapsed:,.0f} {self.unit}/s, "
            f"{mib / elapsed:,.1f} MiB/s)"
        )
