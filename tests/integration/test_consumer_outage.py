"""A live consumer across a server outage of more than 30 s: no gap, no duplicate.

A TCP proxy on 127.0.0.1 stands in front of the reference server. For the
outage it closes its listening socket and drops every connection (clients get
"connection refused"), for OUTAGE_SECONDS, then listens again on the same port:
the reference server keeps its data in memory, so the proxy plays the restart.
Items are appended during the outage. Runs once, on asyncio (it costs ~31 s).
"""

from __future__ import annotations

import anyio
import anyio.abc
import httpx
import pytest

from durable_streams import (
    Consumer,
    DurableStreamError,
    MemoryCheckpoints,
    RetryPolicy,
    StreamHandle,
)

OUTAGE_SECONDS = 31.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Proxy:
    """Forwards 127.0.0.1:<port> to the server; ``outage()`` refuses connections for a while."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._connections = anyio.CancelScope()

    async def _pipe(self, source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            await sink.aclose()

    async def _serve_one(self, client: anyio.abc.SocketStream) -> None:
        with self._connections:
            async with client:
                try:
                    upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
                except OSError:
                    return
                async with upstream, anyio.create_task_group() as tasks:
                    tasks.start_soon(self._pipe, client, upstream)
                    tasks.start_soon(self._pipe, upstream, client)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Listen until cancelled (the port stays the same across outages)."""
        listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.port, reuse_port=False
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        async with listener:
            await listener.serve(self._serve_one)

    async def run(self, outage_started: anyio.Event, end_outage: anyio.Event) -> None:
        async with anyio.create_task_group() as proxy:
            await proxy.start(self.serve)
            await outage_started.wait()
            proxy.cancel_scope.cancel()  # close the listener and drop every connection
        await end_outage.wait()
        async with anyio.create_task_group() as proxy:
            await proxy.start(self.serve)
            await anyio.sleep_forever()


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_live_consumer_outlives_a_31_s_outage(stream_url: str) -> None:
    upstream = httpx.URL(stream_url)
    assert upstream.port is not None
    proxy = Proxy(upstream.port)
    outage = anyio.Event()
    back = anyio.Event()
    seen: list[int] = []
    failures: list[DurableStreamError] = []
    store = MemoryCheckpoints()

    async with StreamHandle(stream_url) as direct:
        await direct.create(content_type="application/json")
        await direct.append_many([{"n": n} for n in range(10)])
        with anyio.fail_after(OUTAGE_SECONDS + 30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(proxy.run, outage, back)
                while proxy.port == 0:
                    await anyio.wait_all_tasks_blocked()
                proxied = stream_url.replace(f":{upstream.port}/", f":{proxy.port}/")
                reached = {n: anyio.Event() for n in (9, 19, 29)}

                async def follow() -> None:
                    # Short delays so the consumer retries often during the outage.
                    policy = RetryPolicy(initial_delay=0.05, max_delay=1.0)
                    async with (
                        StreamHandle(proxied, retry=policy) as handle,
                        Consumer(
                            handle,
                            name="follower",
                            checkpoints=store,
                            live="auto",
                            read_on_error=failures.append,
                        ) as consumer,
                    ):
                        async for item in consumer.iter_json():
                            seen.append(item["n"])
                            if item["n"] in reached:
                                reached[item["n"]].set()

                tasks.start_soon(follow)
                await reached[9].wait()
                outage.set()
                started = anyio.current_time()
                await direct.append_many([{"n": n} for n in range(10, 20)])  # during the outage
                await anyio.sleep(OUTAGE_SECONDS)  # the outage itself, not synchronisation
                back.set()
                await reached[19].wait()
                await direct.append_many([{"n": n} for n in range(20, 30)])
                await reached[29].wait()
                down = anyio.current_time() - started
                tasks.cancel_scope.cancel()
    assert seen == list(range(30))  # no gap, no duplicate
    assert down > 30
    assert failures  # the consumer did see the outage, and kept retrying
