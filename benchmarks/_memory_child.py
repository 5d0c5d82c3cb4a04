"""One 'read the whole stream' run in a fresh process, for scenario 6.

    python -m benchmarks._memory_child {sdk|raw|sdk-json|raw-json} URL EXPECTED

``sdk``/``raw`` read a byte stream and count bytes; ``sdk-json``/``raw-json``
read a JSON stream with its items parsed (``iter_json()`` against GET +
``json.loads`` per response) and count items.

Prints one JSON object: bytes read, seconds, and the peak RSS growth, both as
the kernel's exact peak (VmHWM, reset just before the read: ``peak_growth``)
and as sampled from a thread every 2 ms (``sampled_growth``), relative to the
RSS just before the read starts (after imports and a warm-up request, so only
the read itself is measured). ``ru_maxrss`` is no use here: a forked child
inherits its parent's high-water mark.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from benchmarks._harness import (
    RssSampler,
    check_status,
    kernel_peak_rss,
    raw_client,
    reset_peak_rss,
)
from benchmarks._reads import read_url
from durable_streams import StreamHandle


async def measured(
    warm_up: Callable[[], Awaitable[object]], read: Callable[[], Awaitable[int]]
) -> int:
    """Warm up (the pooled connection exists before measuring), then time and measure ``read``."""
    await warm_up()
    gc.collect()
    reset_peak_rss()
    with RssSampler() as sampler:
        start = time.perf_counter()
        received = await read()
        seconds = time.perf_counter() - start
    report(received, seconds, sampler)
    return received


async def read_sdk(url: str, *, items: bool) -> int:
    async with StreamHandle(url) as handle:

        async def read() -> int:
            received = 0
            async with handle.stream(offset="-1", live=False) as response:
                if items:
                    async for _item in response.iter_json():
                        received += 1
                else:
                    async for chunk in response.iter_bytes():
                        received += len(chunk)
            return received

        return await measured(handle.head, read)


async def read_raw(url: str, *, items: bool) -> int:
    async with raw_client() as client:

        async def read() -> int:
            received = 0
            offset = "-1"
            while True:
                async with client.stream("GET", read_url(url, offset)) as response:
                    check_status(response, 200)
                    if items:
                        received += len(json.loads(await response.aread()))
                    else:
                        async for chunk in response.aiter_bytes():
                            received += len(chunk)
                    offset = response.headers["stream-next-offset"]
                    if "stream-up-to-date" in response.headers:
                        return received

        async def warm_up() -> None:
            check_status(await client.head(url), 200)

        return await measured(warm_up, read)


READERS = {
    "sdk": partial(read_sdk, items=False),
    "raw": partial(read_raw, items=False),
    "sdk-json": partial(read_sdk, items=True),
    "raw-json": partial(read_raw, items=True),
}


def report(received: int, seconds: float, sampler: RssSampler) -> None:
    peak = kernel_peak_rss()
    print(
        json.dumps(
            {
                "bytes": received,
                "seconds": seconds,
                "peak_growth": peak - sampler.start_rss if peak else sampler.peak_growth,
                "sampled_growth": sampler.peak_growth,
            }
        )
    )


def main() -> int:
    variant, url, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    received = anyio.run(READERS[variant], url)
    if received != expected:
        print(f"read {received}, expected {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
