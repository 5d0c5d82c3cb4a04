"""What each command does, with the async SDK (imported only when a command runs)."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO, TypeVar

import anyio
import click

from durable_streams import (
    DurableStreamError,
    IdempotentProducer,
    LiveMode,
    Position,
    RetryPolicy,
    StreamHandle,
    StreamResponse,
)

from ._conventions import EXIT_INTERRUPTED, Settings
from ._output import Progress, Writer, is_tty, output_mode

__all__ = ["append", "close", "create", "delete", "head", "read", "retry_policy"]

T = TypeVar("T")

#: Reads of input files and stdin: at most this much per call.
CHUNK = 64 * 1024
#: The longest input line (or whole input without --lines): a message's upper bound.
MAX_MESSAGE = 64 * 1024 * 1024


def retry_policy(settings: Settings) -> RetryPolicy | None:
    """``--retries`` as a RetryPolicy (None: the SDK's default)."""
    if settings.retries is None:
        return None
    return RetryPolicy(max_attempts=settings.retries)


def _handle(settings: Settings, stream: str) -> StreamHandle:
    return StreamHandle(
        settings.stream_url(stream),
        headers=settings.header_map(),
        timeout=settings.timeout,
        retry=retry_policy(settings),
    )


def _run(work: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(work)


async def _until_interrupted(work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work`` until it returns or SIGINT/SIGTERM cancels it; True if interrupted.

    Only ``work`` is cancelled: cleanup around it (a producer's flush) still runs, and
    a second Ctrl-C during that cleanup interrupts as usual.
    """
    interrupted = False
    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()

        async def watch() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    scope.cancel()
                    return

        group.start_soon(watch)
        with scope:
            await work()
        group.cancel_scope.cancel()
    return interrupted


# -- create / head / close / delete ------------------------------------------------------------


def create(
    settings: Settings,
    stream: str,
    *,
    content_type: str | None,
    ttl: int | None,
    expires_at: str | None,
    closed: bool,
    body: str | None,
    fork_from: str | None,
    fork_offset: str | None,
) -> None:
    async def work() -> None:
        async with _handle(settings, stream) as handle:
            forked_from = settings.stream_url(fork_from) if fork_from else None
            result = await handle.create(
                content_type=content_type,
                ttl=ttl,
                expires_at=expires_at,
                closed=closed,
                body=body,
                forked_from=forked_from,
                fork_offset=fork_offset,
            )
            if is_tty(sys.stdout):
                what = "created" if result.created else "exists (same configuration)"
                click.echo(f"{what}: {handle.url}")
                click.echo(f"  content type: {result.content_type}")
                click.echo(f"  tail offset:  {result.next_offset}")
            else:
                click.echo(result.next_offset or "")

    _run(work)


def head(settings: Settings, stream: str) -> None:
    async def work() -> None:
        async with _handle(settings, stream) as handle:
            info = await handle.head()
        fields = {
            "content_type": info.content_type,
            "next_offset": info.next_offset,
            "ttl": info.ttl,
            "expires_at": info.expires_at.isoformat() if info.expires_at else None,
            "closed": info.closed,
        }
        if is_tty(sys.stdout):
            for name, value in fields.items():
                click.echo(
                    f"{name.replace('_', ' ') + ':':<14}{value if value is not None else '-'}"
                )
        else:
            click.echo(json.dumps(fields))

    _run(work)


def close(settings: Settings, stream: str, *, final: str | None) -> None:
    async def work() -> None:
        async with _handle(settings, stream) as handle:
            if final is None:
                result = await handle.close()
            else:
                result = await handle.close(final=final)
        click.echo(result.final_offset or "")

    _run(work)


def delete(settings: Settings, stream: str) -> None:
    async def work() -> None:
        async with _handle(settings, stream) as handle:
            await handle.delete()
        if is_tty(sys.stderr):
            click.echo(f"deleted {handle.url}", err=True)

    _run(work)


# -- append ------------------------------------------------------------------------------------


def _input(data: str | None, path: str | None) -> tuple[BinaryIO | None, bytes | None]:
    """The input: DATA itself, or a binary file (stdin for ``-`` or when neither is given)."""
    if data is not None and path is not None:
        raise click.UsageError("pass DATA or --file, not both")
    if data == "-":  # the usual spelling of stdin
        data, path = None, "-"
    if data is not None:
        return None, data.encode("utf-8")
    if path is None or path == "-":
        if is_tty(sys.stdin):
            raise click.UsageError("nothing to append: pass DATA, --file, or pipe data to stdin")
        return sys.stdin.buffer, None
    try:
        return open(path, "rb"), None
    except OSError as error:
        raise click.UsageError(f"cannot read {path}: {error.strerror}") from None


async def _chunks(source: BinaryIO) -> AsyncIterator[bytes]:
    """The input in chunks of at most CHUNK bytes, read in a worker thread (cancellable)."""
    read = getattr(source, "read1", source.read)
    while True:
        chunk: bytes = await anyio.to_thread.run_sync(read, CHUNK, abandon_on_cancel=True)
        if not chunk:
            return
        yield chunk


async def _lines(source: BinaryIO) -> AsyncIterator[bytes]:
    """Lines with their newline (the last one may lack it); bounded by MAX_MESSAGE."""
    pending = bytearray()
    async for chunk in _chunks(source):
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0:
                break
            yield bytes(pending[start : end + 1])
            start = end + 1
        del pending[:start]
        if len(pending) > MAX_MESSAGE:
            raise click.UsageError(f"a line is longer than {MAX_MESSAGE} bytes")
    if pending:
        yield bytes(pending)


def _check_json(data: bytes, where: str) -> None:
    try:
        json.loads(data)
    except ValueError as error:
        raise click.UsageError(f"{where} is not valid JSON: {error}") from None


def append(
    settings: Settings,
    stream: str,
    *,
    data: str | None,
    path: str | None,
    as_json: bool,
    lines: bool,
    producer_id: str | None,
) -> None:
    source, literal = _input(data, path)
    try:
        if lines:
            _append_lines(settings, stream, source, literal, as_json, producer_id)
        else:
            _append_one(settings, stream, source, literal, as_json)
    finally:
        if source is not None and source is not sys.stdin.buffer:
            source.close()


def _append_one(
    settings: Settings,
    stream: str,
    source: BinaryIO | None,
    literal: bytes | None,
    as_json: bool,
) -> None:
    async def work() -> None:
        body = literal
        if body is None:
            assert source is not None
            parts = bytearray()
            async for chunk in _chunks(source):
                parts += chunk
                if len(parts) > MAX_MESSAGE:
                    raise click.UsageError(f"the input is larger than {MAX_MESSAGE} bytes")
            body = bytes(parts)
        if as_json:
            _check_json(body, "the input")
        async with _handle(settings, stream) as handle:
            result = await handle.append(body)
        click.echo(result.next_offset or "")

    _run(work)


def _append_lines(
    settings: Settings,
    stream: str,
    source: BinaryIO | None,
    literal: bytes | None,
    as_json: bool,
    producer_id: str | None,
) -> None:
    progress = Progress("sent", unit="messages", enabled=is_tty(sys.stderr))

    async def messages(json_mode: bool) -> AsyncIterator[bytes]:
        if literal is not None:
            found: AsyncIterator[bytes] = _single(literal)
        else:
            assert source is not None
            found = _lines(source)
        number = 0
        async for line in found:
            number += 1
            if json_mode:
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
            if as_json:
                _check_json(line, f"line {number}")
            yield line

    async def work() -> None:
        async with _handle(settings, stream) as handle:
            json_mode = "json" in (await handle.write_content_type()).lower()
            name = producer_id or f"durable-streams-cli-{uuid.uuid4().hex[:16]}"
            last_offset: str | None = None
            async with IdempotentProducer(handle, name, auto_claim=True) as producer:
                held: bytes | None = (
                    None  # the last line is sent with send(): its ack has the offset
                )

                async def feed() -> None:
                    nonlocal held
                    async for line in messages(json_mode):
                        if held is not None:
                            await producer.wait_for_capacity(len(held) + 1)
                            producer.append(held)
                            progress.add(1, len(held))
                        held = line

                with progress:
                    interrupted = await _until_interrupted(feed)
                    if held is not None:
                        ack = await producer.send(held)
                        progress.add(1, len(held))
                        last_offset = ack.offset
                    await producer.flush()
            if last_offset is None:
                last_offset = (await handle.head()).next_offset
        click.echo(last_offset or "")
        if interrupted:
            click.echo("durable-streams: interrupted; what was read was sent", err=True)
            sys.exit(EXIT_INTERRUPTED)

    _run(work)


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- read / tail ---------------------------------------------------------------------------------


def _start(value: str) -> str | Position:
    if value.startswith("dsp1:"):
        return Position.parse(value)
    return value


def _resume_value(res: StreamResponse) -> str:
    position = res.position
    return res.offset if position.skip == 0 else str(position)


def read(
    settings: Settings,
    stream: str,
    *,
    follow: bool,
    start: str,
    output: str | None,
) -> None:
    stdout_tty = is_tty(sys.stdout)
    progress = Progress(
        "read", unit="messages", enabled=not follow and not stdout_tty and is_tty(sys.stderr)
    )
    live: LiveMode = "auto" if follow else False

    def on_error(error: DurableStreamError) -> None:
        click.echo(f"durable-streams: {error}; retrying", err=True)

    async def work() -> None:
        async with _handle(settings, stream) as handle:
            res = await handle.stream(
                _start(start),
                live,
                on_error=on_error if follow else None,
                retry=retry_policy(settings),
            )
            mode = output_mode(output, res.content_type, tty=stdout_tty)
            writer = Writer(mode, sys.stdout.buffer)
            try:
                with progress:
                    interrupted = await _until_interrupted(lambda: _copy(res, writer, progress))
            finally:
                writer.flush()
                await res.aclose()
                click.echo(f"durable-streams: resume with --from {_resume_value(res)}", err=True)
        if interrupted:
            sys.exit(EXIT_INTERRUPTED)

    _run(work)


async def _copy(res: StreamResponse, writer: Writer, progress: Progress) -> None:
    if writer.items:
        offset = res.offset
        async for item in res.iter_json():
            size = writer.item(item)
            progress.add(1, size)
            if res.offset != offset:  # the last item of a response: show it now
                offset = res.offset
                writer.flush()
    else:
        async for chunk in res.iter_bytes():
            writer.raw(chunk)
            progress.add(0, len(chunk))
            writer.flush()
