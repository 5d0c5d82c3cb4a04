"""Run a Python child until it is ready, send it Ctrl-C (SIGINT), collect what it printed."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Interrupted:
    returncode: int
    stdout: str  # after the ready line
    stderr: str


def interrupt_when_ready(script: str, *args: str, ready: str, timeout: float = 20) -> Interrupted:
    """Start ``python -c script *args``; once it printed the line ``ready``, send SIGINT.

    Example::

        done = interrupt_when_ready(CHILD, url, ready="reading")
        assert done.returncode == 0, done.stderr
    """
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == ready + "\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return Interrupted(child.returncode, out, err)
