"""Fault injection: the Python API and the reference server's ``/_test/inject-error`` contract."""

from __future__ import annotations

import httpx
import pytest

from durable_streams import InvalidArgumentError, NetworkError, StreamHandle
from durable_streams.testing import InMemoryServer

pytestmark = pytest.mark.anyio


async def test_the_endpoint_accepts_replaces_and_clears_faults() -> None:
    server = InMemoryServer()
    async with server.client(base_url=server.url) as client:
        ok = await client.post("/_test/inject-error", json={"path": "/s", "status": 503})
        assert (ok.status_code, ok.json()) == (200, {"ok": True})
        assert (await client.put("/s")).status_code == 503
        assert (await client.put("/s")).status_code == 201  # count defaults to 1
        await client.post("/_test/inject-error", json={"path": "/s", "status": 500, "count": 5})
        await client.post("/_test/inject-error", json={"path": "/s", "status": 429})  # replaces
        assert (await client.head("/s")).status_code == 429
        assert (await client.head("/s")).status_code == 200
        await client.post("/_test/inject-error", json={"path": "/s", "status": 500, "count": 5})
        assert (await client.delete("/_test/inject-error")).status_code == 200
        assert (await client.head("/s")).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON body"),
        (b'{"status": 503}', "Missing required field: path"),
        (b'{"path": "/s", "count": 2}', "Must specify at least one fault type"),
    ],
)
async def test_the_endpoint_refuses_bad_bodies_with_400(body: bytes, message: str) -> None:
    server = InMemoryServer()
    async with server.client(base_url=server.url) as client:
        response = await client.post("/_test/inject-error", content=body)
    assert response.status_code == 400
    assert message in response.text


async def test_other_methods_on_the_endpoint_are_405() -> None:
    server = InMemoryServer()
    async with server.client(base_url=server.url) as client:
        assert (await client.get("/_test/inject-error")).status_code == 405


async def test_method_probability_and_retry_after() -> None:
    server = InMemoryServer()
    server.inject("/s", status=429, retry_after=7, method="POST")
    server.inject("/t", status=500, probability=0.0)  # never triggers, never used up
    async with server.client(base_url=server.url) as client:
        assert (await client.put("/s")).status_code == 201  # not a POST: untouched
        limited = await client.post("/s", content=b"x", headers={"content-type": "a/b"})
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
        for _ in range(20):
            assert (await client.put("/t")).status_code in (200, 201)
    assert "/t" in server.faults.by_path


async def test_a_dropped_connection_is_a_network_error_for_the_sdk() -> None:
    server = InMemoryServer()
    async with server.client() as client:
        handle = StreamHandle(server.stream_url("s"), client=client)
        server.inject(handle.url, drop=True, count=100)
        with pytest.raises(NetworkError) as raised:
            await handle.create()
        assert isinstance(raised.value.__cause__, httpx.RemoteProtocolError)


async def test_truncated_bodies_keep_a_consistent_length() -> None:
    server = InMemoryServer()
    async with server.client(base_url=server.url) as client:
        await client.put("/s", content=b"abcdef", headers={"content-type": "text/plain"})
        server.inject("/s", truncate=2, method="GET")
        response = await client.get("/s", params={"offset": "-1"})
    assert response.content == b"ab"


def test_a_fault_needs_an_effect() -> None:
    with pytest.raises(InvalidArgumentError):
        InMemoryServer().inject("/s", count=3)
