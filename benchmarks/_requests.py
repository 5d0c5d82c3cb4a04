"""Scenarios 1 and 2: per-request overhead of append, create and head.

Each request is awaited before the next (sequential, one pooled keep-alive
connection). The SDK and the baseline use separate but identically configured
clients and separate streams, so neither warms the other's connection.
"""

from __future__ import annotations

import os

from durable_streams import StreamHandle, new_client

from ._harness import (
    BYTES_TYPE,
    Bench,
    Row,
    check_status,
    compare_latency,
    latency_rows,
    raw_client,
)

PER_REQUEST_TARGET = "<= 1.15x raw"
MAX_PER_REQUEST_RATIO = 1.15


async def append_latency(bench: Bench) -> list[Row]:
    """1. Sequential 100 B appends to a byte stream: p50/p99 latency."""
    sizes = bench.sizes
    payload = os.urandom(100)
    headers = {"content-type": BYTES_TYPE}
    sdk_url, raw_url = bench.new_url("append-sdk"), bench.new_url("append-raw")
    async with StreamHandle(sdk_url) as handle, raw_client() as client:
        await handle.create(content_type=BYTES_TYPE)
        check_status(await client.put(raw_url, headers=headers), 201)

        async def sdk_append() -> object:
            return (await handle.append(payload)).next_offset

        async def raw_append() -> object:
            response = check_status(
                await client.post(raw_url, content=payload, headers=headers), 204
            )
            return response.headers.get("stream-next-offset")

        sdk_rounds, raw_rounds = await compare_latency(sizes, sdk_append, raw_append)
    return latency_rows(
        "1 append 100 B",
        sdk_rounds,
        raw_rounds,
        max_ratio=MAX_PER_REQUEST_RATIO,
        target=PER_REQUEST_TARGET,
    )


async def create_head_latency(bench: Bench) -> list[Row]:
    """2. Create (PUT) of fresh streams and HEAD of one stream: p50/p99 latency.

    The SDK creates each stream through a new ``StreamHandle`` on one shared
    client (what an app creating many streams does), so handle construction is
    part of the SDK figure.
    """
    sizes = bench.sizes
    headers = {"content-type": BYTES_TYPE}
    async with new_client() as sdk_client, raw_client() as client:

        async def sdk_create() -> object:
            handle = StreamHandle(bench.new_url("create-sdk"), client=sdk_client)
            return (await handle.create(content_type=BYTES_TYPE)).created

        async def raw_create() -> object:
            response = check_status(
                await client.put(bench.new_url("create-raw"), headers=headers), 201
            )
            return response.headers.get("stream-next-offset")

        head_handle = StreamHandle(bench.new_url("head"), client=sdk_client)
        await head_handle.create(content_type=BYTES_TYPE, body=b"some data")
        head_url = head_handle.url

        async def sdk_head() -> object:
            return (await head_handle.head()).next_offset

        async def raw_head() -> object:
            response = check_status(await client.head(head_url), 200)
            return response.headers.get("stream-next-offset")

        rows: list[Row] = []
        for name, sdk_call, raw_call in (
            ("2 create", sdk_create, raw_create),
            ("2 head", sdk_head, raw_head),
        ):
            sdk_rounds, raw_rounds = await compare_latency(sizes, sdk_call, raw_call)
            rows += latency_rows(
                name,
                sdk_rounds,
                raw_rounds,
                max_ratio=MAX_PER_REQUEST_RATIO,
                target=PER_REQUEST_TARGET,
            )
    return rows
