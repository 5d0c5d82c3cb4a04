"""The pytest fixtures (registered by the package's pytest11 entry point), on asyncio and trio."""

from __future__ import annotations

import httpx
import pytest

from durable_streams import StreamHandle
from durable_streams.testing import InMemoryServer

pytestmark = pytest.mark.anyio


async def test_the_fixtures_give_a_server_a_client_and_a_fresh_url(
    ds_server: InMemoryServer, ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    assert ds_stream_url.startswith(ds_server.url)
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        assert (await handle.create(content_type="application/json")).status == 201
        await handle.append({"n": 1})
        assert await (await handle.stream(live=False)).json() == [{"n": 1}]
    assert ds_server.page_size is None


@pytest.mark.durable_streams(page_size=1, long_poll_timeout=0.5)
async def test_the_marker_configures_the_server(
    ds_server: InMemoryServer, ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    assert (ds_server.page_size, ds_server.long_poll_timeout) == (1, 0.5)
    async with StreamHandle(ds_stream_url, client=ds_client) as handle:
        await handle.create(content_type="application/json")
        await handle.append_many([1, 2])
        async with handle.stream(live=False) as res:
            assert [batch.items async for batch in res] == [[1], [2]]
