"""A fork server that runs documentation code blocks, each in a fresh child process.

Run as ``python -m tests.docs.runner``. It imports the SDK once (about half a second that each
block would otherwise pay), then reads one JSON request per line on stdin,
``{"name": ..., "code": ..., "url": ..., "timeout": ..., "backend": ...}``, forks a child that runs
``code`` as ``__main__`` with ``DURABLE_STREAMS_URL=url`` in an empty temporary folder (with
``anyio.run`` defaulting to ``backend``: "asyncio" or "trio"), and answers one JSON
line, ``{"rc": exit code, "output": the child's stdout and stderr}``. The child is killed by
SIGALRM after ``timeout`` seconds, so a block that hangs fails instead of hanging the suite.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import linecache
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback

import anyio

import durable_streams
import durable_streams.state
import durable_streams.sync
import durable_streams.testing

OUTPUT_LIMIT = 8000


def preload() -> None:
    """Import every public name now, so children start warm."""
    for name in durable_streams.__all__:
        getattr(durable_streams, name)
    for module in ("anyio", "anyio.to_thread", "httpx", "pydantic", "sqlite3", "trio"):
        importlib.import_module(module)
    # Forking is only safe while this process has one thread.
    assert threading.active_count() == 1, threading.enumerate()


def run_child(
    code: str, name: str, url: str, timeout: float, backend: str, folder: str, output: str
) -> None:
    """In the forked child: run the block and exit with its status (never returns)."""
    status = 1
    try:
        anyio.run = functools.partial(anyio.run, backend=backend)  # type: ignore[assignment]
        signal.alarm(max(1, int(timeout)))  # SIGALRM's default action ends the process
        with open(output, "wb") as sink, open(os.devnull, "rb") as nothing:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            os.dup2(nothing.fileno(), 0)
        os.chdir(folder)
        os.environ["DURABLE_STREAMS_URL"] = url
        sys.argv = [name]
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # for tracebacks
        try:
            exec(compile(code, name, "exec"), {"__name__": "__main__", "__file__": name})
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            status = 1
        atexit._run_exitfuncs()  # what interpreter exit would run (the sync API's loop stops)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def run(request: dict[str, object]) -> dict[str, object]:
    folder = tempfile.mkdtemp(prefix="docs-block-")
    output = os.path.join(folder, ".output")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        run_child(
            str(request["code"]),
            str(request["name"]),
            str(request["url"]),
            float(request["timeout"]),  # type: ignore[arg-type]
            str(request.get("backend", "asyncio")),
            folder,
            output,
        )
    _, status = os.waitpid(pid, 0)
    try:
        with open(output, "rb") as sink:
            text = sink.read().decode("utf-8", "replace")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if len(text) > OUTPUT_LIMIT:
        text = "...\n" + text[-OUTPUT_LIMIT:]
    rc = os.waitstatus_to_exitcode(status)
    if rc == -signal.SIGALRM:
        text += f"\n(killed: still running after {request['timeout']} s)"
    return {"rc": rc, "output": text}


def main() -> None:
    preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
