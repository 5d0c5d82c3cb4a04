"""The runner's side of the adapter protocol: one adapter process, one JSON line per command.

Replies are read by a background thread into a queue, so the runner can send a
command without waiting (background reads), do direct server actions, and
collect the reply later with a timeout. After a timeout the process is killed
and restarted (and re-``init``-ed), so a late reply can never be taken for the
answer to the next command.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from .cases import REPO_ROOT

#: The adapter command: ``$DURABLE_STREAMS_CONFORMANCE_ADAPTER`` (split on spaces) or ours.
DEFAULT_ADAPTER: tuple[str, ...] = tuple(
    os.environ.get("DURABLE_STREAMS_CONFORMANCE_ADAPTER", "").split()
    or [str(REPO_ROOT / "conformance" / "run-adapter")]
)
COMMAND_TIMEOUT = float(os.environ.get("DURABLE_STREAMS_CONFORMANCE_TIMEOUT", "30"))
BENCHMARK_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 5.0


class AdapterError(RuntimeError):
    """The adapter crashed, timed out or sent something that is not a reply."""


class AdapterClient:
    """A running adapter process (started by :meth:`start`, stopped by :meth:`stop`)."""

    def __init__(
        self, command: Sequence[str | Path] = DEFAULT_ADAPTER, env: dict[str, str] | None = None
    ) -> None:
        self.command = [str(part) for part in command]
        self.env = {**os.environ, **env} if env else None
        self.server_url: str | None = None
        self.features: dict[str, Any] = {}
        self.init_reply: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue[bytes | None] = queue.Queue()
        self._outstanding = 0

    # -- process ----------------------------------------------------------------------------

    def start(self, server_url: str) -> dict[str, Any]:
        """Start the process and ``init`` it; returns the init reply."""
        self.server_url = server_url
        self._spawn()
        reply = self.call({"type": "init", "serverUrl": server_url})
        if reply.get("success") is not True or reply.get("type") != "init":
            self.stop()
            raise AdapterError(f"adapter init failed: {reply}")
        self.init_reply = reply
        features = reply.get("features")
        self.features = dict(features) if isinstance(features, dict) else {}
        return reply

    def _spawn(self) -> None:
        self._replies = queue.Queue()
        self._outstanding = 0
        process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", env=self.env
        )
        self._process = process
        assert process.stdout is not None
        threading.Thread(
            target=_pump, args=(process.stdout, self._replies), daemon=True, name="adapter-replies"
        ).start()

    def restart(self) -> None:
        """Kill the process (if running) and start a fresh one with the same server."""
        self._kill()
        if self.server_url is not None:
            self.start(self.server_url)

    def stop(self) -> int | None:
        """``shutdown`` politely, then make sure the process is gone; returns its exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            try:
                self.drain(restart=False)
                self.send({"type": "shutdown"})
                self.receive(SHUTDOWN_TIMEOUT, restart=False)
                process.wait(timeout=SHUTDOWN_TIMEOUT)
            except (AdapterError, subprocess.TimeoutExpired, OSError):
                pass
        code = process.poll()
        self._kill()
        return code

    def _kill(self) -> None:
        process = self._process
        self._process = None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    # -- commands ---------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Commands sent whose reply has not been received yet."""
        return self._outstanding

    def send(self, command: dict[str, Any]) -> None:
        self.send_raw(json.dumps(command).encode("ascii") + b"\n")

    def send_raw(self, data: bytes, replies: int = 1) -> None:
        """Write bytes as they are, expecting ``replies`` replies to them."""
        process = self._process
        if process is None or process.stdin is None or process.poll() is not None:
            raise AdapterError("the adapter is not running")
        try:
            process.stdin.write(data)
            process.stdin.flush()
        except OSError as exc:
            raise AdapterError(f"cannot write to the adapter: {exc}") from exc
        self._outstanding += replies

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def receive(self, timeout: float | None = None, *, restart: bool = True) -> dict[str, Any]:
        """The next reply; raises on timeout, crash or garbage.

        After a timeout or crash the adapter is restarted (``restart=False``: just
        killed), so a late reply cannot be taken for the next command's.
        """
        if timeout is None:
            timeout = COMMAND_TIMEOUT
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            self._kill()
            if restart:
                self.restart()
            raise AdapterError(f"no reply from the adapter within {timeout:g} s") from None
        self._outstanding -= 1
        if line is None:
            code = self._process.poll() if self._process else None
            self._kill()
            if restart:
                self.restart()
            raise AdapterError(f"the adapter exited (code {code}) before replying")
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise AdapterError(f"the adapter sent a line that is not JSON: {line[:200]!r}") from exc
        if not isinstance(reply, dict) or not isinstance(reply.get("success"), bool):
            raise AdapterError(f"the adapter sent a malformed reply: {line[:200]!r}")
        return reply

    def call(self, command: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply."""
        if timeout is None:
            timeout = BENCHMARK_TIMEOUT if command.get("type") == "benchmark" else COMMAND_TIMEOUT
        self.send(command)
        return self.receive(timeout)

    def drain(self, *, restart: bool = True) -> None:
        """Collect and drop the replies of commands nobody awaited (e.g. after a failed test)."""
        while self._outstanding > 0 and self._process is not None:
            self.receive(restart=restart)


def _pump(stdout: IO[bytes], replies: queue.Queue[bytes | None]) -> None:
    # Blank lines are not replies; EOF is signalled with None.
    for line in stdout:
        if line.strip():
            replies.put(line)
    replies.put(None)
