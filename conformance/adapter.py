"""Conformance adapter: drives the durable_streams SDK for the official client test suite.

It speaks the adapter protocol (one JSON command per stdin line, one JSON reply
per stdout line; see the repository's conformance/README.md) and uses only the
public ``durable_streams`` API with one shared ``httpx.AsyncClient`` for its
whole life. It measures the SDK: anything the suite needs that the SDK lacks
belongs in the SDK, not here.

Plain appends use ``append_retry="at-least-once"``: the suite expects a plain
append to be retried after a 500, accepting a possible duplicate.

Run it with ``conformance/run-adapter`` (the project's virtualenv Python). This
file is the protocol loop, the command dispatch and the stream, read and producer
commands; its sibling modules (imported from the script's own directory) hold the
replies, the read bookkeeping, ``validate`` and ``benchmark``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import benchmark
import httpx
import validate
from anyio.abc import TaskGroup, TaskStatus
from reads import ReadOutcome, is_json_type
from replies import Command, Failure, Reply, error_reply

import durable_streams as ds

CLIENT_NAME = "aio-durable-streams"
FEATURES = {
    "batching": True,
    "sse": True,
    "longPoll": True,
    "auto": True,
    "streaming": True,
    "dynamicHeaders": True,
    "retryOptions": True,
    "batchItems": True,
    "strictZeroValidation": True,
}
DEFAULT_READ_TIMEOUT_MS = 5000
DEFAULT_MAX_CHUNKS = 100
LIVE_MODES: dict[Any, ds.LiveMode] = {
    False: False,
    True: "auto",
    "long-poll": "long-poll",
    "sse": "sse",
    "auto": "auto",
}


@dataclass
class Dynamic:
    """A ``set-dynamic-header`` / ``set-dynamic-param`` definition."""

    kind: str
    initial: str | None = None
    counter: int = 0

    def next_value(self) -> str:
        if self.kind == "counter":
            self.counter += 1
            return str(self.counter)
        if self.kind == "timestamp":
            return str(int(time.time() * 1000))
        return self.initial or ""


@dataclass
class CachedProducer:
    """A producer kept across commands. Its ``async with`` lives in an owner task of its own
    (structured concurrency), which leaves once ``stopped`` is set."""

    producer: ds.IdempotentProducer
    stopped: anyio.Event = field(default_factory=anyio.Event)

    async def own(self, *, task_status: TaskStatus[None]) -> None:
        started = False
        try:
            async with self.producer:
                task_status.started()
                started = True
                await self.stopped.wait()
        except ds.DurableStreamError as exc:
            if not started:
                raise  # to the command that wanted the producer
            # Never let one producer's late failure take the adapter down.
            print(f"adapter: producer stopped with {exc!r}", file=sys.stderr, flush=True)

    async def stop(self) -> None:
        """Flush and detach (errors were reported by the command that saw them), then leave."""
        try:
            with anyio.move_on_after(5), contextlib.suppress(ds.DurableStreamError):
                await self.producer.detach()
        finally:
            self.stopped.set()


class Adapter:
    """Adapter state (kept across tests, reset by ``init``) and the command handlers."""

    def __init__(self, client: httpx.AsyncClient, task_group: TaskGroup) -> None:
        self.client = client
        self.task_group = task_group
        self.server_url = ""
        self.handles: dict[str, ds.StreamHandle] = {}
        self.producers: dict[tuple[str, str, int], CachedProducer] = {}
        self.dynamic_headers: dict[str, Dynamic] = {}
        self.dynamic_params: dict[str, Dynamic] = {}

    # -- plumbing --------------------------------------------------------------------------

    async def handle(self, command: Command) -> Reply:
        kind = str(command.get("type"))
        handler: Callable[[Command, float], Awaitable[Reply]] | None = getattr(
            self, "cmd_" + kind.replace("-", "_"), None
        )
        arrived = anyio.current_time()
        try:
            if handler is None:
                raise Failure("NOT_SUPPORTED", f"unknown command type {kind!r}")
            reply = await handler(command, arrived)
        except Exception as exc:
            return error_reply(kind, command, exc)
        return {"type": kind, "success": True, **reply}

    def stream(self, path: str) -> ds.StreamHandle:
        """The cached handle of a path (it remembers the stream's content type)."""
        handle = self.handles.get(path)
        if handle is None:
            handle = ds.StreamHandle(
                self.server_url + path, client=self.client, append_retry="at-least-once"
            )
            self.handles[path] = handle
        return handle

    def dynamic(self, headers: Any) -> tuple[dict[str, str], dict[str, str], Reply]:
        """Headers and params for one append/read: dynamic values (evaluated once) + command's."""
        sent_headers = {name: d.next_value() for name, d in self.dynamic_headers.items()}
        sent_params = {name: d.next_value() for name, d in self.dynamic_params.items()}
        given = {str(k): str(v) for k, v in (headers or {}).items()}
        overridden = {name.lower(): value for name, value in given.items()}
        # Command headers win over dynamic ones (header names are case-insensitive).
        for name in sent_headers:
            sent_headers[name] = overridden.get(name.lower(), sent_headers[name])
        merged = {n: v for n, v in sent_headers.items() if n.lower() not in overridden} | given
        report: Reply = {}
        if sent_headers:
            report["headersSent"] = sent_headers
        if sent_params:
            report["paramsSent"] = sent_params
        return merged, sent_params, report

    async def drop_producers(self) -> None:
        producers, self.producers = list(self.producers.values()), {}
        for cached in producers:
            await cached.stop()

    # -- lifecycle -------------------------------------------------------------------------

    async def cmd_init(self, command: Command, arrived: float) -> Reply:
        await self.drop_producers()
        self.server_url = str(command["serverUrl"]).rstrip("/")
        self.handles.clear()
        self.dynamic_headers.clear()
        self.dynamic_params.clear()
        return {"clientName": CLIENT_NAME, "clientVersion": ds.__version__, "features": FEATURES}

    async def cmd_shutdown(self, command: Command, arrived: float) -> Reply:
        await self.drop_producers()
        return {}

    # -- stream commands ---------------------------------------------------------------------

    async def cmd_create(self, command: Command, arrived: float) -> Reply:
        path = str(command["path"])
        self.handles.pop(path, None)  # a fresh handle learns the type this create sets
        result = await self.stream(path).create(
            content_type=command.get("contentType") or "application/octet-stream",
            ttl=command.get("ttlSeconds"),
            expires_at=command.get("expiresAt"),
            body=command.get("data"),
            closed=bool(command.get("closed", False)),
            headers=command.get("headers"),
        )
        reply: Reply = {"status": 201 if result.created else 200}
        if result.next_offset:
            reply["offset"] = result.next_offset
        return reply

    async def cmd_connect(self, command: Command, arrived: float) -> Reply:
        info = await self.stream(str(command["path"])).head(headers=command.get("headers"))
        return {"status": 200, **({"offset": info.next_offset} if info.next_offset else {})}

    async def cmd_head(self, command: Command, arrived: float) -> Reply:
        info = await self.stream(str(command["path"])).head(headers=command.get("headers"))
        reply: Reply = {
            "status": 200,
            "offset": info.next_offset or "",
            "streamClosed": info.closed,
        }
        if info.content_type is not None:
            reply["contentType"] = info.content_type
        if info.ttl is not None:
            reply["ttlSeconds"] = info.ttl
        if info.expires_at is not None:
            reply["expiresAt"] = info.expires_at.isoformat().replace("+00:00", "Z")
        return reply

    async def cmd_delete(self, command: Command, arrived: float) -> Reply:
        path = str(command["path"])
        try:
            await self.stream(path).delete(headers=command.get("headers"))
        finally:
            self.handles.pop(path, None)
        return {"status": 200}

    async def cmd_append(self, command: Command, arrived: float) -> Reply:
        data: str | bytes = str(command.get("data", ""))
        if command.get("binary"):
            try:
                data = base64.b64decode(data, validate=True)
            except binascii.Error as exc:
                raise Failure("INVALID_ARGUMENT", f"append: data is not base64: {exc}") from None
        headers, params, report = self.dynamic(command.get("headers"))
        for name, header in (
            ("producerId", "producer-id"),
            ("producerEpoch", "producer-epoch"),
            ("producerSeq", "producer-seq"),
        ):
            if command.get(name) is not None:
                headers[header] = str(command[name])
        result = await self.stream(str(command["path"])).append(
            data, seq=command.get("seq"), headers=headers, params=params
        )
        reply: Reply = {"status": 200, "offset": result.next_offset or "", **report}
        if result.producer_epoch is not None:
            reply["duplicate"] = result.duplicate
            reply["producerEpoch"] = result.producer_epoch
        if result.producer_seq is not None:
            reply["producerSeq"] = result.producer_seq
        return reply

    async def cmd_close(self, command: Command, arrived: float) -> Reply:
        path = str(command["path"])
        handle = self.stream(path)
        if command.get("contentType"):
            handle = ds.StreamHandle(
                handle.url,
                client=self.client,
                content_type=str(command["contentType"]),
                append_retry="at-least-once",
            )
        data = command.get("data")
        result = await (handle.close(final=data) if data else handle.close())
        return {"status": 200, "finalOffset": result.final_offset or ""}

    cmd_server_close = cmd_close

    # -- reads -----------------------------------------------------------------------------------

    async def cmd_read(self, command: Command, arrived: float) -> Reply:
        path = str(command["path"])
        live = command.get("live", False)
        if live not in LIVE_MODES:
            raise Failure("INVALID_ARGUMENT", f"read {path}: unknown live mode {live!r}")
        mode = LIVE_MODES[live]
        offset = str(command.get("offset") or "-1")
        deadline = arrived + float(command.get("timeoutMs", DEFAULT_READ_TIMEOUT_MS)) / 1000
        max_chunks = int(command.get("maxChunks", DEFAULT_MAX_CHUNKS))
        wait_up_to_date = bool(command.get("waitForUpToDate", False))
        headers, params, report = self.dynamic(command.get("headers"))
        outcome = ReadOutcome(offset=offset)
        handle = self.stream(path)

        async def collect() -> None:
            async with handle.stream(offset, live=mode, headers=headers, params=params) as res:
                outcome.status = res.status or 200
                outcome.json_mode = is_json_type(res.content_type)
                async for batch in res:
                    outcome.take(batch, live=mode is not False)
                    if mode is not False and (
                        len(outcome.chunks) >= max_chunks
                        or (wait_up_to_date and batch.up_to_date)
                        or batch.closed
                    ):
                        return

        if mode is False:
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    await collect()  # the SDK stops at up-to-date (or EOF)
            except TimeoutError:
                raise Failure("TIMEOUT", f"read {path}: catch-up did not finish in time") from None
            outcome.finish_catch_up()
        else:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
                await collect()
            if scope.cancelled_caught:  # the deadline is not an error for live reads
                outcome.up_to_date = True
        return {**outcome.reply(), **report}

    # -- idempotent producers -------------------------------------------------------------------

    def new_producer(self, command: Command, **options: Any) -> ds.IdempotentProducer:
        return ds.IdempotentProducer(
            self.stream(str(command["path"])),
            str(command.get("producerId", "")),
            epoch=int(command.get("epoch", 0)),
            auto_claim=bool(command.get("autoClaim", False)),
            # The suite replays batches under the epoch it names (e.g. a new producer
            # instance re-sending an earlier one's batch) and expects the duplicate.
            identity="replay",
            headers=command.get("headers"),
            **options,
        )

    async def cached_producer(self, command: Command) -> ds.IdempotentProducer:
        """The producer of ``(path, producerId, epoch)``: one request in flight, no linger."""
        key = producer_key(command)
        cached = self.producers.get(key)
        if cached is None:
            cached = CachedProducer(self.new_producer(command, linger_ms=0, max_in_flight=1))
            await self.task_group.start(cached.own)
            self.producers[key] = cached
        return cached.producer

    async def forget_producer(self, command: Command) -> None:
        cached = self.producers.pop(producer_key(command), None)
        if cached is not None:
            await cached.stop()

    async def cmd_idempotent_append(self, command: Command, arrived: float) -> Reply:
        producer = await self.cached_producer(command)
        try:
            ack = await producer.send(str(command.get("data", "")))
        except ds.DurableStreamError:
            await self.forget_producer(command)  # failed for good: later commands start afresh
            raise
        reply: Reply = {"status": 200, "duplicate": ack.duplicate, "producerSeq": ack.seq}
        if ack.offset:
            reply["offset"] = ack.offset
        return reply

    async def cmd_idempotent_append_batch(self, command: Command, arrived: float) -> Reply:
        in_flight = int(command.get("maxInFlight") or 1)
        options: dict[str, Any] = {"max_in_flight": max(1, in_flight)}
        if in_flight > 1:
            options["max_batch_items"] = 1  # small batches, pipelined
        producer = self.new_producer(command, **options)
        async with producer:
            for item in command.get("items") or []:
                producer.append(str(item))
            await producer.flush()
            await producer.detach()
        return {"status": 200}

    async def cmd_idempotent_close(self, command: Command, arrived: float) -> Reply:
        producer = await self.cached_producer(command)
        data = command.get("data")
        result = await (producer.close(final=str(data)) if data else producer.close())
        return {"status": 200, "finalOffset": result.final_offset or ""}

    async def cmd_idempotent_detach(self, command: Command, arrived: float) -> Reply:
        cached = self.producers.pop(producer_key(command), None)
        if cached is not None:
            try:
                await cached.producer.detach()  # its errors are this command's
            finally:
                cached.stopped.set()
        return {"status": 200}

    # -- dynamic headers and params ---------------------------------------------------------------

    async def cmd_set_dynamic_header(self, command: Command, arrived: float) -> Reply:
        initial = command.get("initialValue")
        self.dynamic_headers[str(command["name"])] = Dynamic(
            str(command.get("valueType")), None if initial is None else str(initial)
        )
        return {}

    async def cmd_set_dynamic_param(self, command: Command, arrived: float) -> Reply:
        self.dynamic_params[str(command["name"])] = Dynamic(str(command.get("valueType")))
        return {}

    async def cmd_clear_dynamic(self, command: Command, arrived: float) -> Reply:
        self.dynamic_headers.clear()
        self.dynamic_params.clear()
        return {}

    # -- validate and benchmark ------------------------------------------------------------------

    async def cmd_validate(self, command: Command, arrived: float) -> Reply:
        return validate.run(command, client=self.client, server_url=self.server_url)

    async def cmd_benchmark(self, command: Command, arrived: float) -> Reply:
        return await benchmark.run(self, command)


def producer_key(command: Command) -> tuple[str, str, int]:
    return str(command["path"]), str(command.get("producerId", "")), int(command.get("epoch", 0))


def write_reply(reply: Reply) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


async def main() -> None:
    async with ds.new_client() as client, anyio.create_task_group() as task_group:
        adapter = Adapter(client, task_group)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.buffer.readline)
            if not line:
                break  # the runner closed stdin
            if not line.strip():
                continue
            try:
                command = json.loads(line.decode("utf-8"))
                if not isinstance(command, dict):
                    raise ValueError("a command is a JSON object")
            except ValueError as exc:
                write_reply(
                    {
                        "type": "error",
                        "success": False,
                        "commandType": "unknown",
                        "errorCode": "PARSE_ERROR",
                        "message": f"unreadable command: {exc}",
                    }
                )
                continue
            write_reply(await adapter.handle(command))
            if command.get("type") == "shutdown":
                break
        await adapter.drop_producers()  # their owner tasks end, so the task group can


if __name__ == "__main__":
    # asyncio by default; DURABLE_STREAMS_ADAPTER_BACKEND=trio runs the same session on trio.
    anyio.run(main, backend=os.environ.get("DURABLE_STREAMS_ADAPTER_BACKEND", "asyncio"))
