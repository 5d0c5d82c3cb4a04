"""The ``durable-streams`` command: arguments, exit codes and error reporting.

Only Click is imported here, so ``--help`` starts fast; each command imports
the SDK (httpx, pydantic, anyio) when it runs, from :mod:`._commands`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ._conventions import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Settings,
    exit_code_for,
)

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

_EPILOG = "Exit codes:\n\n\b\n" + "\n".join(
    f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()
)


class _State:
    debug = False


def _common(func: F) -> F:
    """The connection options, on every stream command (so they may follow the command)."""
    options = [
        click.option(
            "--url",
            envvar="DURABLE_STREAMS_URL",
            show_envvar=True,
            help="Base URL that relative STREAM paths are joined to.",
        ),
        click.option(
            "-H",
            "--header",
            "headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            help="Extra request header (repeatable). Values are never printed.",
        ),
        click.option(
            "--token",
            envvar="DURABLE_STREAMS_TOKEN",
            show_envvar=True,
            help="Bearer token sent as Authorization. Never printed.",
        ),
        click.option(
            "--timeout", type=click.FloatRange(min=0.1), help="Per-request timeout in seconds."
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=1),
            help="Attempts per request before giving up (default 8; tail -f: unlimited).",
        ),
        click.option("--debug", is_flag=True, help="Show tracebacks (and retries) on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(kwargs: dict[str, Any]) -> Settings:
    _State.debug = bool(kwargs.pop("debug", False)) or _State.debug
    if _State.debug:
        import logging

        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("durable_streams").setLevel(logging.DEBUG)
    return Settings(
        url=kwargs.pop("url", None),
        headers=tuple(kwargs.pop("headers", ())),
        token=kwargs.pop("token", None),
        timeout=kwargs.pop("timeout", None),
        retries=kwargs.pop("retries", None),
    )


@click.group(
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="aio-durable-streams", prog_name="durable-streams")
def cli() -> None:
    """Create, write, read, follow and delete Durable Streams.

    STREAM is a full URL, or a path joined to --url / $DURABLE_STREAMS_URL:

    \b
        export DURABLE_STREAMS_URL=http://127.0.0.1:4437/v1/stream
        durable-streams create chat -t application/json
        echo '{"text": "hi"}' | durable-streams append chat --json
        durable-streams tail -f chat
    """


# -- commands --------------------------------------------------------------------------------


@cli.command()
@click.argument("stream")
@click.option("-t", "--content-type", help="Content type (default application/octet-stream).")
@click.option("--ttl", type=click.IntRange(min=0), help="Delete after this many idle seconds.")
@click.option(
    "--expires-at", metavar="RFC3339", help="Delete at this time, e.g. 2030-01-01T00:00:00Z."
)
@click.option("--closed", is_flag=True, help="Create it closed (with --body as all its content).")
@click.option("--body", help="Initial content.")
@click.option("--fork-from", metavar="STREAM", help="Fork this stream (same server).")
@click.option("--fork-offset", metavar="OFFSET", help="Fork the data before this offset.")
@_common
def create(stream: str, **kwargs: Any) -> None:
    """Create STREAM; prints its tail offset.

    Succeeds if the stream exists with the same configuration; exit code 3 if it exists with
    another.
    """
    settings = _settings(kwargs)
    from ._commands import create as run

    run(settings, stream, **kwargs)


@cli.command()
@click.argument("stream")
@click.argument("data", required=False)
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read from a file (- for stdin).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Check that the input is JSON before sending."
)
@click.option(
    "--lines",
    is_flag=True,
    help="Send each line as a message, batched through an exactly-once producer.",
)
@click.option("--producer-id", help="Producer id for --lines (default: a fresh one).")
@_common
def append(stream: str, **kwargs: Any) -> None:
    """Append DATA, a file or stdin; prints the offset after it.

    Without --lines the whole input is one message. With --lines each line is one (on JSON
    streams blank lines are skipped; on other streams lines keep their newline, so reading the
    stream back gives the input byte for byte). Ctrl-C stops reading input and flushes what was
    read before exiting.
    """
    settings = _settings(kwargs)
    from ._commands import append as run

    run(settings, stream, **kwargs)


_OUTPUT = click.Choice(["raw", "jsonl", "pretty"])
_OUTPUT_HELP = (
    "raw: the bytes as stored; jsonl: one JSON message per line; pretty: indented, coloured JSON. "
    "Default: pretty on a terminal and jsonl otherwise for JSON streams, raw for others."
)


@cli.command()
@click.argument("stream")
@click.option(
    "--from",
    "start",
    default="-1",
    show_default=True,
    metavar="OFFSET|POSITION",
    help="Where to start: -1 (the beginning), now, an offset, or a position printed earlier.",
)
@click.option("-o", "--output", type=_OUTPUT, help=_OUTPUT_HELP)
@_common
def read(stream: str, **kwargs: Any) -> None:
    """Print STREAM's data up to its current end.

    Then prints on stderr the --from value that resumes exactly after it.
    """
    settings = _settings(kwargs)
    from ._commands import read as run

    run(settings, stream, follow=False, **kwargs)


@cli.command()
@click.argument("stream")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new data until the stream closes."
)
@click.option(
    "--from",
    "start",
    default="-1",
    show_default=True,
    metavar="OFFSET|POSITION",
    help="Where to start: -1, now (only new data), an offset or a position.",
)
@click.option("-o", "--output", type=_OUTPUT, help=_OUTPUT_HELP)
@_common
def tail(stream: str, **kwargs: Any) -> None:
    """Print STREAM's data; with -f, follow it live.

    Following reconnects after network errors and server restarts, and ends when the stream
    is closed.

    On exit (end of stream, Ctrl-C, error) prints on stderr the --from value that resumes
    exactly after the last message printed.
    """
    settings = _settings(kwargs)
    from ._commands import read as run

    run(settings, stream, **kwargs)


@cli.command()
@click.argument("stream")
@_common
def head(stream: str, **kwargs: Any) -> None:
    """Show STREAM's metadata (JSON when piped).

    Content type, tail offset, TTL or expiry time, and whether it is closed.
    """
    settings = _settings(kwargs)
    from ._commands import head as run

    run(settings, stream)


@cli.command()
@click.argument("stream")
@click.option("--final", metavar="DATA", help="Append this last message in the same request.")
@_common
def close(stream: str, **kwargs: Any) -> None:
    """Close STREAM; prints its final offset.

    Nothing can be appended after it, and readers stop at its end.
    """
    settings = _settings(kwargs)
    from ._commands import close as run

    run(settings, stream, **kwargs)


@cli.command()
@click.argument("stream")
@_common
def delete(stream: str, **kwargs: Any) -> None:
    """Delete STREAM."""
    settings = _settings(kwargs)
    from ._commands import delete as run

    run(settings, stream)


# -- subscriptions (PROTOCOL §7) --------------------------------------------------------------


@cli.group()
def subscription() -> None:
    """Manage subscriptions: server-tracked progress over many streams (pull-wake or webhook).

    SUBSCRIPTION_ID and stream paths are relative to the stream root (--url /
    $DURABLE_STREAMS_URL, e.g. http://127.0.0.1:4437/v1/stream). Output is a summary on a
    terminal and one JSON line otherwise.
    """


@subscription.command("create")
@click.argument("subscription_id")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["pull-wake", "webhook"]),
    required=True,
    help="pull-wake: wake events on --wake-stream for workers; webhook: signed POSTs.",
)
@click.option("--pattern", help="Link every stream matching this glob (* one segment, ** any).")
@click.option(
    "--stream", "streams", multiple=True, metavar="PATH", help="Link this stream (repeatable)."
)
@click.option("--wake-stream", metavar="PATH", help="Where pull-wake events are appended.")
@click.option("--webhook-url", metavar="URL", help="Where webhook wakes are POSTed (https).")
@click.option(
    "--lease-ttl-ms",
    type=click.IntRange(1000, 600_000),
    help="How long a wake is leased without a heartbeat (server default 30000).",
)
@click.option("--description", help="Free text kept with the subscription.")
@_common
def subscription_create(subscription_id: str, **kwargs: Any) -> None:
    """Create SUBSCRIPTION_ID (succeeds if it exists with the same configuration).

    Exit code 3 if it exists with another configuration. Linked streams start at their
    tail: their existing data is not work.
    """
    settings = _settings(kwargs)
    from ._subscriptions import create as run

    run(settings, subscription_id, **kwargs)


@subscription.command("get")
@click.argument("subscription_id")
@_common
def subscription_get(subscription_id: str, **kwargs: Any) -> None:
    """Show SUBSCRIPTION_ID: its configuration, status and each linked stream's acked offset."""
    settings = _settings(kwargs)
    from ._subscriptions import get as run

    run(settings, subscription_id)


@subscription.command("delete")
@click.argument("subscription_id")
@_common
def subscription_delete(subscription_id: str, **kwargs: Any) -> None:
    """Delete SUBSCRIPTION_ID (its streams are untouched)."""
    settings = _settings(kwargs)
    from ._subscriptions import delete as run

    run(settings, subscription_id)


@subscription.command("link")
@click.argument("subscription_id")
@click.argument("streams", nargs=-1, required=True, metavar="STREAM...")
@_common
def subscription_link(subscription_id: str, streams: tuple[str, ...], **kwargs: Any) -> None:
    """Link STREAMs to SUBSCRIPTION_ID, at their tails (linking again changes nothing)."""
    settings = _settings(kwargs)
    from ._subscriptions import link as run

    run(settings, subscription_id, streams)


@subscription.command("unlink")
@click.argument("subscription_id")
@click.argument("stream")
@_common
def subscription_unlink(subscription_id: str, stream: str, **kwargs: Any) -> None:
    """Remove STREAM's explicit link (a link made by the pattern stays)."""
    settings = _settings(kwargs)
    from ._subscriptions import unlink as run

    run(settings, subscription_id, stream)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=4437, show_default=True)
def serve(host: str, port: int) -> None:
    """Run the Python test server ([server] extra)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("durable_streams.testing") is not None
    except ImportError:
        found = False
    if not found:
        raise click.UsageError(
            "serve runs the Python test server, durable_streams.testing, which is not installed: "
            "pip install 'aio-durable-streams[server]'"
        )
    import runpy

    sys.argv = ["durable-streams serve", "--host", host, "--port", str(port)]
    runpy.run_module("durable_streams.testing", run_name="__main__", alter_sys=True)


# -- entry point -----------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"durable-streams: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the ``durable-streams`` command (the console script) and exit with its code.

    Example::

        main(["head", "http://127.0.0.1:4437/v1/stream/chat"])
    """
    try:
        code = cli.main(args=argv, prog_name="durable-streams", standalone_mode=False)
    except click.UsageError as error:  # Click's own code for these is 2, ours is 1
        where = error.ctx.command_path if error.ctx is not None else "durable-streams"
        _fail(f"{error.format_message()} (see {where} --help)", EXIT_USAGE)
    except click.ClickException as error:
        _fail(error.format_message(), EXIT_USAGE)
    except (click.Abort, KeyboardInterrupt):
        click.echo("durable-streams: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_OK)
    except Exception as error:
        if _State.debug:
            traceback.print_exc()
        if type(error).__module__.startswith("durable_streams"):
            code = exit_code_for(error)
            name = getattr(error, "code", type(error).__name__)
            _fail(f"{error} ({name})", code)
        _fail(f"{type(error).__name__}: {error} (run with --debug for the traceback)", EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
