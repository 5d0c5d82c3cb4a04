"""The CLI's argument handling, exit codes and startup, without a server."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import click
import pytest

import durable_streams as ds
from durable_streams.cli import EXIT_CODES, exit_code_for, main
from durable_streams.cli._conventions import Settings


def run_main(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(args)
    code = exited.value.code
    assert isinstance(code, int)
    return code


def test_relative_streams_join_the_base_url() -> None:
    settings = Settings(url="http://h:1/v1/stream/")
    assert settings.stream_url("chat") == "http://h:1/v1/stream/chat"
    assert settings.stream_url("/a/b") == "http://h:1/v1/stream/a/b"
    assert settings.stream_url("https://other/x") == "https://other/x"
    with pytest.raises(click.UsageError, match="DURABLE_STREAMS_URL"):
        Settings().stream_url("chat")


def test_headers_and_token() -> None:
    settings = Settings(headers=("X-A: 1", "x-b:two words "), token="tok")
    assert settings.header_map() == {"X-A": "1", "x-b": "two words", "Authorization": "Bearer tok"}
    with pytest.raises(click.UsageError) as bad:
        Settings(headers=("Bearer s3cret",)).header_map()
    assert "s3cret" not in bad.value.format_message()
    assert "s3cret" not in repr(Settings(token="s3cret"))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ds.NotFoundError("x"), 2),
        (ds.GoneError("x"), 2),
        (ds.StreamClosedError("x"), 3),
        (ds.StreamConfigMismatchError("x"), 3),
        (ds.SequenceConflictError("x"), 3),
        (ds.NetworkError("x"), 4),
        (ds.RequestTimeoutError("x"), 4),
        (ds.AppendOutcomeUnknownError("x"), 4),
        (ds.UnauthorizedError("x"), 5),
        (ds.StaleEpochError("x"), 5),
        (ds.InvalidArgumentError("x"), 1),
        (ds.UsageError("x"), 1),
        (ds.BadRequestError("x"), 6),
        (ds.ServerError("x"), 6),
        (ds.ParseError("x"), 6),
        (ds.ProducerFlushError("x", failures=[]), 6),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code_for(error) == code
    assert code in EXIT_CODES


def test_usage_errors_exit_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["read"]) == 1  # missing STREAM: Click's own code would be 2
    assert run_main(["read", "chat"]) == 1  # relative path, no base URL
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    assert all(line.startswith("durable-streams: error: ") for line in err.splitlines())


def test_serve_without_the_test_server_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "durable_streams.testing" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert run_main(["serve", "--port", "0"]) == 1
    assert "[server]" in capsys.readouterr().err


def test_help_lists_commands_and_exit_codes_without_loading_the_sdk() -> None:
    code = (
        "import sys\n"
        "from durable_streams.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(sorted(m for m in ('httpx', 'pydantic', 'anyio', 'rich') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("create", "append", "read", "tail", "head", "close", "delete", "serve"):
        assert f"  {name}  " in done.stdout
    for name in ("subscription",):
        assert f"  {name}  " in done.stdout
    for meaning in EXIT_CODES.values():
        assert meaning in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
