"""The ``benchmark`` command: one timed operation per call, measured with the public API."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from reads import is_json_type
from replies import Command, Failure, Reply

import durable_streams as ds

if TYPE_CHECKING:  # the adapter runs as __main__: importing it again would start a second copy
    from adapter import Adapter

ROUNDTRIP_TIMEOUT = 30.0  # well inside the runner's 60 s per benchmark command


async def run(adapter: Adapter, command: Command) -> Reply:
    operation = command.get("operation")
    if not isinstance(operation, dict):
        raise Failure("INVALID_ARGUMENT", "benchmark: operation must be an object")
    op = str(operation.get("op"))
    runner = OPS.get(op)
    if runner is None:
        raise Failure("NOT_SUPPORTED", f"benchmark: unknown op {op!r}")
    duration, metrics = await runner(adapter, operation)
    return {
        "iterationId": command.get("iterationId"),
        "durationNs": str(duration),
        "metrics": metrics,
    }


async def bench_append(adapter: Adapter, op: dict[str, Any]) -> tuple[int, Reply]:
    handle = adapter.stream(str(op["path"]))
    payload = b"x" * int(op["size"])
    if handle.content_type is None:
        await handle.head()  # learn the content type outside the timed part
    start = time.perf_counter_ns()
    await handle.append(payload)
    return time.perf_counter_ns() - start, {"bytesTransferred": len(payload)}


async def bench_read(adapter: Adapter, op: dict[str, Any]) -> tuple[int, Reply]:
    handle = adapter.stream(str(op["path"]))
    start = time.perf_counter_ns()
    async with handle.stream(str(op.get("offset") or "-1")) as res:
        body = await res.body()
    return time.perf_counter_ns() - start, {"bytesTransferred": len(body)}


async def bench_roundtrip(adapter: Adapter, op: dict[str, Any]) -> tuple[int, Reply]:
    path = str(op["path"])
    size = int(op["size"])
    content_type = str(op.get("contentType") or "application/octet-stream")
    live: ds.LiveMode = "sse" if op.get("live") == "sse" else "long-poll"
    payload = (
        json.dumps("x" * max(0, size - 2)).encode() if is_json_type(content_type) else (b"x" * size)
    )
    adapter.handles.pop(path, None)
    handle = adapter.stream(path)
    received = 0
    start = time.perf_counter_ns()
    await handle.create(content_type=content_type)
    with anyio.fail_after(ROUNDTRIP_TIMEOUT):
        async with handle.stream("-1", live=live) as res:

            async def read_until_data() -> None:
                nonlocal received
                async for batch in res:
                    if len(batch):  # items or bytes: an empty JSON batch still reads "[]"
                        received = len(batch.data)
                        return

            # The response stays open until the reader has seen the data.
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_until_data)
                await handle.append(payload)
    return time.perf_counter_ns() - start, {"bytesTransferred": size + received}


async def bench_create(adapter: Adapter, op: dict[str, Any]) -> tuple[int, Reply]:
    path = str(op["path"])
    adapter.handles.pop(path, None)
    handle = adapter.stream(path)
    start = time.perf_counter_ns()
    await handle.create(content_type=str(op.get("contentType") or "application/octet-stream"))
    return time.perf_counter_ns() - start, {}


async def bench_throughput_append(adapter: Adapter, op: dict[str, Any]) -> tuple[int, Reply]:
    handle = adapter.stream(str(op["path"]))
    count, size = int(op["count"]), int(op["size"])
    start = time.perf_counter_ns()
    with contextlib.suppress(ds.StreamConfigMismatchError):  # it exists already
        await handle.create(content_type=handle.content_type or "application/octet-stream")
    if handle.content_type is None:
        await handle.head()
    json_mode = is_json_type(handle.content_type)
    payload = json.dumps("x" * max(0, size - 2)) if json_mode else "x" * size
    concurrency = max(1, int(op.get("concurrency") or 1))
    async with ds.IdempotentProducer(
        handle, f"bench-{uuid.uuid4().hex}", max_in_flight=concurrency
    ) as producer:
        for _ in range(count):
            await producer.wait_for_capacity()
            producer.append(payload)
        await producer.flush()
    elapsed = time.perf_counter_ns() - start
    return elapsed, {"bytesTransferred": count * size, "messagesProcessed": count}


async def bench_throughput_read(adapter: Adapter, op: dict[str, Any]) -> tuple[int, Reply]:
    handle = adapter.stream(str(op["path"]))
    messages = size = 0
    start = time.perf_counter_ns()
    async with handle.stream("-1") as res:
        async for batch in res:
            messages += len(batch.items)
            size += len(batch.data)
    elapsed = time.perf_counter_ns() - start
    return elapsed, {"messagesProcessed": messages, "bytesTransferred": size}


OPS: dict[str, Callable[[Adapter, dict[str, Any]], Awaitable[tuple[int, Reply]]]] = {
    "append": bench_append,
    "read": bench_read,
    "roundtrip": bench_roundtrip,
    "create": bench_create,
    "throughput_append": bench_throughput_append,
    "throughput_read": bench_throughput_read,
}
