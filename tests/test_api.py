"""Unit tests of ``_api.py``: one-shot helpers each use and release one temporary client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

import durable_streams

pytestmark = pytest.mark.anyio

URL = "http://streams.test/v1/stream/s"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def closed_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every client the SDK creates, to check it was closed."""
    created: list[httpx.AsyncClient] = []
    original = durable_streams._transport.new_client

    def tracking(timeout: object = None) -> httpx.AsyncClient:
        client = original(timeout)  # type: ignore[arg-type]
        created.append(client)
        return client

    monkeypatch.setattr("durable_streams._transport.new_client", tracking)
    return created


async def test_each_helper_sends_one_request_and_closes_its_client(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = closed_clients(monkeypatch)
    tail = {"stream-next-offset": "0000_0003", "content-type": "text/plain"}
    mock.put(URL).respond(201, headers=tail)
    mock.post(URL).respond(204, headers=tail)
    mock.head(URL).respond(200, headers=tail)
    mock.delete(URL).respond(204)

    assert (await durable_streams.create(URL, content_type="text/plain")).created
    result = await durable_streams.append(URL, b"x", content_type="text/plain")
    assert result.next_offset == "0000_0003"
    assert (await durable_streams.head(URL)).next_offset == "0000_0003"
    await durable_streams.delete(URL)

    assert [route.call_count for route in mock.routes] == [1, 1, 1, 1]
    assert len(created) == 4
    assert all(client.is_closed for client in created)


async def test_stream_owns_its_client_until_the_response_closes(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = closed_clients(monkeypatch)
    mock.get(url__startswith=URL).respond(
        200,
        content=b"hello",
        headers={
            "stream-next-offset": "0000_0005",
            "stream-up-to-date": "true",
            "content-type": "text/plain",
        },
    )
    async with durable_streams.stream(URL, live=False) as res:
        assert not created[0].is_closed
        assert await res.text() == "hello"
    assert created[0].is_closed


async def test_a_client_passed_in_is_never_closed(mock: respx.MockRouter) -> None:
    mock.head(URL).respond(200, headers={"stream-next-offset": "0000_0001"})
    async with httpx.AsyncClient() as mine:
        await durable_streams.head(URL, client=mine)
        assert not mine.is_closed
