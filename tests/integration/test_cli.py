"""The ``durable-streams`` command, run for real in subprocesses against the reference server.

Each test starts the installed console script (or a pty around it) and waits on
what it prints, never on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durable_streams.sync import StreamHandle
from tests.server.harness import ReferenceServer

SCRIPT = Path(sys.executable).parent / "durable-streams"
SECRET = "s3cr3t-t0ken-never-shown"
DEADLINE = 30.0


@pytest.fixture
def env(server: ReferenceServer) -> dict[str, str]:
    """The environment of every run: the base URL, and a token that must never show."""
    return {
        **os.environ,
        "DURABLE_STREAMS_URL": f"{server.url}/v1/stream",
        "DURABLE_STREAMS_TOKEN": SECRET,
    }


@pytest.fixture
def name(stream_url: str) -> str:
    return stream_url.rsplit("/", 1)[1]


def run(
    env: dict[str, str], *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [str(SCRIPT), *args], env=env, input=input, capture_output=True, timeout=120
    )
    assert SECRET.encode() not in done.stdout + done.stderr
    return done


def test_create_append_read_head_close_delete(env: dict[str, str], name: str) -> None:
    created = run(env, "create", name, "-t", "application/json", "--ttl", "600")
    assert created.returncode == 0, created.stderr
    assert run(env, "create", name, "-t", "text/plain").returncode == 3  # other config
    assert run(env, "append", name, '{"n": 1}', "--json").returncode == 0
    assert run(env, "append", name, "-", input=b'{"n": 2}').returncode == 0
    bad = run(env, "append", name, "--json", input=b"{nope")
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("durable-streams: error: ")
    assert bad.stderr.count(b"\n") == 1

    read = run(env, "read", name)
    assert read.returncode == 0
    assert read.stdout.decode().splitlines() == ['{"n":1}', '{"n":2}']
    resume = read.stderr.decode().strip().rsplit(" ", 1)[1]

    info = json.loads(run(env, "head", name).stdout)
    assert info["content_type"] == "application/json"
    assert info["ttl"] == 600
    assert info["closed"] is False
    assert info["next_offset"] == resume

    closed = run(env, "close", name, "--final", '{"n": 3}')
    assert closed.returncode == 0
    with StreamHandle(f"{env['DURABLE_STREAMS_URL']}/{name}") as handle:
        assert closed.stdout.decode().strip() == handle.head().next_offset
        assert handle.stream(offset=resume).json() == [{"n": 3}]
    assert run(env, "append", name, "x").returncode == 3  # closed
    assert run(env, "delete", name).returncode == 0
    missing = run(env, "head", name)
    assert missing.returncode == 2
    assert b"NOT_FOUND" in missing.stderr


def test_python_m_and_errors_never_print_credentials(env: dict[str, str], name: str) -> None:
    header = ["-H", f"X-Api-Key: {SECRET}", "--token", SECRET, "--debug"]
    done = subprocess.run(
        [sys.executable, "-m", "durable_streams", "head", name, *header],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"Traceback" in done.stderr  # --debug shows it, still without the token
    assert SECRET.encode() not in done.stdout + done.stderr
    refused = run(env, "head", "http://127.0.0.1:1/v1/stream/x", "--retries", "2", *header)
    assert refused.returncode == 4


def test_append_lines_100k_read_back_exactly(env: dict[str, str], name: str) -> None:
    with StreamHandle(f"{env['DURABLE_STREAMS_URL']}/{name}") as handle:
        handle.create(content_type="application/json")
        lines = [
            json.dumps({"n": n, "text": f"line {n}"}, separators=(",", ":")) for n in range(100_000)
        ]
        appended = run(env, "append", name, "--lines", input=("\n".join(lines) + "\n").encode())
        assert appended.returncode == 0, appended.stderr
        assert appended.stdout.decode().strip() == handle.head().next_offset
    read = run(env, "read", name, "-o", "jsonl")
    assert read.returncode == 0, read.stderr
    assert read.stdout.decode().splitlines() == lines


def test_append_lines_of_text_keeps_the_bytes(env: dict[str, str], name: str) -> None:
    data = "".join(f"héllo {n}\n" if n % 7 else "\n" for n in range(1000)).encode()
    with StreamHandle(f"{env['DURABLE_STREAMS_URL']}/{name}") as handle:
        handle.create(content_type="text/plain")
        assert run(env, "append", name, "--lines", input=data).returncode == 0
        assert handle.stream().body() == data


def _read_line(stream: object, deadline: float) -> str:
    assert hasattr(stream, "readline")
    line: bytes = stream.readline()
    assert time.monotonic() < deadline
    return line.decode()


def test_tail_follows_live_appends_until_closed(env: dict[str, str], name: str) -> None:
    handle = StreamHandle(f"{env['DURABLE_STREAMS_URL']}/{name}")
    handle.create(content_type="application/json")
    handle.append({"n": 0})
    tail = subprocess.Popen(
        [str(SCRIPT), "tail", "-f", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + DEADLINE
        assert tail.stdout is not None
        assert _read_line(tail.stdout, deadline) == '{"n":0}\n'  # caught up: now live
        for n in (1, 2):
            handle.append({"n": n})
            assert _read_line(tail.stdout, deadline) == f'{{"n":{n}}}\n'
        handle.close(final={"n": 3})
        assert _read_line(tail.stdout, deadline) == '{"n":3}\n'
        _, err = tail.communicate(timeout=DEADLINE)  # EOF ends it
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        handle.release()
    assert tail.returncode == 0
    assert err.decode().startswith("durable-streams: resume with --from ")


def test_tail_ctrl_c_prints_where_to_resume(env: dict[str, str], name: str) -> None:
    handle = StreamHandle(f"{env['DURABLE_STREAMS_URL']}/{name}")
    handle.create(content_type="application/json")
    handle.append({"n": 0})
    tail = subprocess.Popen(
        [str(SCRIPT), "tail", "-f", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert tail.stdout is not None
        assert _read_line(tail.stdout, time.monotonic() + DEADLINE) == '{"n":0}\n'
        tail.send_signal(signal.SIGINT)
        out, err = tail.communicate(timeout=DEADLINE)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 130
    assert out == b""
    resume = err.decode().strip().rsplit(" ", 1)[1]
    handle.append({"n": 1})
    assert handle.stream(offset=resume).json() == [{"n": 1}]  # nothing repeated or skipped
    handle.release()


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """A command in a pseudo-terminal: what its screen shows, as text without escapes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        env = {**env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once
            os.execve(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        self.screen = b""

    def text(self) -> str:
        return ANSI.sub(b"", self.screen).decode("utf-8", "replace")

    def wait_for(self, needle: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while needle not in self.text():
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never showed; the screen shows:\n{self.text()}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:  # the child exited and the pty closed
                    break
        return self.text()

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_code(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_tail_in_a_terminal(env: dict[str, str], name: str) -> None:
    handle = StreamHandle(f"{env['DURABLE_STREAMS_URL']}/{name}")
    handle.create(content_type="application/json")
    handle.append({"msg": "first"})
    term = Terminal([str(SCRIPT), "tail", "-f", name], env)
    try:
        term.wait_for('"msg": "first"')  # pretty JSON on a terminal
        handle.append({"msg": "second", "n": 2})
        screen = term.wait_for('"msg": "second"')
        assert '"n": 2' in screen
        term.type(b"\x03")  # Ctrl-C, through the terminal
        screen = term.wait_for("resume with --from ")
        assert term.exit_code() == 130
    finally:
        handle.release()
        with contextlib.suppress(ProcessLookupError):
            os.kill(term.pid, signal.SIGKILL)
    assert screen.index('"msg": "first"') < screen.index('"msg": "second"')
    assert SECRET not in screen


def test_serve_runs_the_python_test_server(env: dict[str, str]) -> None:
    server = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        here = {**env, "DURABLE_STREAMS_URL": f"{url}/v1/stream"}
        assert run(here, "create", "served", "-t", "application/json").returncode == 0
        assert run(here, "append", "served", '{"n": 1}', "--json").returncode == 0
        read = run(here, "read", "served", "--output", "jsonl")
        assert read.returncode == 0, read.stderr
        assert [json.loads(line) for line in read.stdout.splitlines()] == [{"n": 1}]
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=DEADLINE) == 130  # EXIT_INTERRUPTED: a clean stop
        assert server.stderr is not None
        assert b"Traceback" not in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pipe in (server.stdout, server.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.subscriptions
def test_subscription_management(env: dict[str, str], name: str) -> None:
    sub = f"{name}-sub"
    wakes = f"{name}-wakes"
    assert run(env, "create", wakes, "-t", "application/json").returncode == 0
    assert run(env, "create", f"{name}-a", "-t", "application/json").returncode == 0
    options = ["--type", "pull-wake", "--pattern", f"{name}-p/*", "--wake-stream", wakes]
    options += ["--lease-ttl-ms", "5000"]
    created = run(env, "subscription", "create", sub, *options, "--description", "cli test")
    assert created.returncode == 0, created.stderr
    shown = json.loads(created.stdout)
    assert (shown["id"], shown["type"], shown["lease_ttl_ms"]) == (sub, "pull-wake", 5000)
    again = run(env, "subscription", "create", sub, *options, "--description", "cli test")
    assert again.returncode == 0  # the same configuration
    other = run(env, "subscription", "create", sub, *options[:-2])  # another lease ttl
    assert other.returncode == 3  # exists with another configuration
    assert b"SUBSCRIPTION_ALREADY_EXISTS" in other.stderr

    assert run(env, "subscription", "link", sub, f"{name}-a").returncode == 0
    got = json.loads(run(env, "subscription", "get", sub).stdout)
    assert [stream["path"] for stream in got["streams"]] == [f"{name}-a"]
    assert run(env, "subscription", "unlink", sub, f"{name}-a").returncode == 0
    assert json.loads(run(env, "subscription", "get", sub).stdout)["streams"] == []

    assert run(env, "subscription", "delete", sub).returncode == 0
    missing = run(env, "subscription", "get", sub)
    assert missing.returncode == 2
    assert b"SUBSCRIPTION_NOT_FOUND" in missing.stderr
    bad = run(env, "subscription", "create", sub, "--type", "webhook", "--webhook-url", "ftp://x")
    assert bad.returncode in (1, 6), bad.stderr  # refused locally or by the server, one line
    assert len(bad.stderr.splitlines()) == 1
