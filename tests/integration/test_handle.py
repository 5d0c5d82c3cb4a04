"""StreamHandle against the reference server: every operation, option and status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pydantic
import pytest

import durable_streams
from durable_streams import (
    BadRequestError,
    DurableStream,
    EmptyAppendError,
    GoneError,
    InvalidArgumentError,
    InvalidJsonError,
    NotFoundError,
    SequenceConflictError,
    StreamClosedError,
    StreamConfigMismatchError,
    StreamHandle,
)
from tests.server.harness import ReferenceServer

pytestmark = pytest.mark.anyio

TEXT = "text/plain"
JSON = "application/json"


@pytest.fixture
async def handle(stream_url: str) -> AsyncIterator[StreamHandle]:
    async with StreamHandle(stream_url) as h:
        yield h


async def read_pages(handle: StreamHandle) -> list[bytes]:
    """Raw bodies of a catch-up to the tail, however many responses the server uses."""
    pages: list[bytes] = []
    offset = "-1"
    while True:
        response = await handle.client.get(handle.url, params={"offset": offset})
        assert response.status_code == 200
        pages.append(response.content)
        offset = response.headers["stream-next-offset"]
        if "stream-up-to-date" in response.headers:
            return pages


async def read_all(handle: StreamHandle) -> bytes:
    return b"".join(await read_pages(handle))


async def read_json(handle: StreamHandle) -> list[Any]:
    items: list[Any] = []
    for page in await read_pages(handle):
        parsed = json.loads(page)
        assert isinstance(parsed, list)
        items += parsed
    return items


# -- create ----------------------------------------------------------------------------------


async def test_create_then_recreate_distinguishes_201_and_200(handle: StreamHandle) -> None:
    first = await handle.create(content_type=TEXT)
    assert first.created
    assert first.status == 201
    assert first.content_type == TEXT
    assert first.next_offset
    assert first.location
    assert first.location.endswith(httpx.URL(handle.url).path)
    again = await handle.create(content_type=TEXT)
    assert not again.created
    assert again.status == 200
    assert again.next_offset == first.next_offset
    assert handle.content_type == TEXT


async def test_create_default_content_type_is_octet_stream(handle: StreamHandle) -> None:
    result = await handle.create()
    assert result.content_type == "application/octet-stream"
    assert (await handle.head()).content_type == "application/octet-stream"


async def test_create_with_other_content_type_is_a_config_conflict(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    with pytest.raises(StreamConfigMismatchError) as caught:
        await handle.create(content_type=JSON)
    assert caught.value.status == 409
    assert caught.value.code == "CONFLICT"
    assert caught.value.url == handle.url


async def test_ttl_is_reported_by_head_and_part_of_the_config(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT, ttl=3600)
    info = await handle.head()
    assert info.ttl == 3600
    assert info.expires_at is None
    assert (await handle.create(content_type=TEXT, ttl=3600)).status == 200
    with pytest.raises(StreamConfigMismatchError):
        await handle.create(content_type=TEXT, ttl=60)


async def test_expires_at_round_trips_and_recreate_with_same_datetime_is_200(
    handle: StreamHandle,
) -> None:
    deadline = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=123456) + timedelta(
        hours=1
    )
    await handle.create(content_type=TEXT, expires_at=deadline)
    info = await handle.head()
    assert info.ttl is None
    assert info.expires_at is not None
    assert abs((info.expires_at - deadline).total_seconds()) < 0.001
    # The server compares the header as a raw string: the SDK must send one canonical form.
    same_instant = deadline.astimezone(timezone.utc)
    assert (await handle.create(content_type=TEXT, expires_at=same_instant)).status == 200


async def test_ttl_and_expires_at_together_fail_locally(handle: StreamHandle) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await handle.create(ttl=10, expires_at=datetime.now(timezone.utc))
    assert caught.value.field == "ttl"
    assert not await handle.exists()


async def test_create_with_initial_body_on_a_json_stream(handle: StreamHandle) -> None:
    result = await handle.create(content_type=JSON, body='[{"a":1},{"b":2}]')
    assert result.created
    assert await read_json(handle) == [{"a": 1}, {"b": 2}]


async def test_create_closed_with_body(handle: StreamHandle) -> None:
    result = await handle.create(content_type=TEXT, body="the end", closed=True)
    assert result.closed
    info = await handle.head()
    assert info.closed
    assert await read_all(handle) == b"the end"
    with pytest.raises(StreamClosedError) as caught:
        await handle.append("more")
    assert caught.value.final_offset == info.next_offset
    assert caught.value.code == "STREAM_CLOSED"


@pytest.mark.parametrize(("first_closed", "second_closed"), [(False, True), (True, False)])
async def test_recreate_with_other_closed_state_is_409(
    handle: StreamHandle, first_closed: bool, second_closed: bool
) -> None:
    await handle.create(content_type=TEXT, closed=first_closed)
    assert (await handle.create(content_type=TEXT, closed=first_closed)).status == 200
    with pytest.raises(StreamConfigMismatchError):
        await handle.create(content_type=TEXT, closed=second_closed)


async def test_create_rejects_bad_headers_with_400(handle: StreamHandle) -> None:
    with pytest.raises(BadRequestError) as caught:
        await handle.create(content_type=TEXT, expires_at="not a date")
    assert caught.value.status == 400
    assert "Expires-At" in (caught.value.body or "")


# -- forks -----------------------------------------------------------------------------------


async def test_fork_at_the_tail_inherits_all_data(stream_url: str, handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    await handle.append("abc")
    async with StreamHandle(stream_url + "-fork", client=handle.client) as fork:
        result = await fork.create(forked_from=stream_url)
        assert result.created
        assert result.content_type == TEXT
        await handle.append("source only")
        await fork.append("def")
        assert await read_all(fork) == b"abcdef"


async def test_fork_at_an_offset_and_sub_offset(stream_url: str, handle: StreamHandle) -> None:
    await handle.create(content_type=JSON)
    middle = (await handle.append_many([1, 2])).next_offset
    await handle.append_many([3, 4])
    assert middle is not None
    source_path = httpx.URL(stream_url).path
    async with StreamHandle(stream_url + "-a", client=handle.client) as fork:
        await fork.create(forked_from=source_path, fork_offset=middle)
        assert await read_json(fork) == [1, 2]
    async with StreamHandle(stream_url + "-b", client=handle.client) as fork:
        await fork.create(forked_from=stream_url, fork_offset=middle, fork_sub_offset=1)
        assert await read_json(fork) == [1, 2, 3]


async def test_fork_errors(stream_url: str, handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    async with StreamHandle(stream_url + "-f", client=handle.client) as fork:
        with pytest.raises(NotFoundError):
            await fork.create(forked_from=stream_url + "-missing")
        with pytest.raises(BadRequestError):
            await fork.create(forked_from=stream_url, fork_offset="not-an-offset")
        with pytest.raises(StreamConfigMismatchError):
            await fork.create(forked_from=stream_url, content_type=JSON)
        with pytest.raises(InvalidArgumentError):
            await fork.create(fork_offset="0000000000000000_0000000000000000")


async def test_deleting_a_forked_source_soft_deletes_it(
    stream_url: str, handle: StreamHandle
) -> None:
    await handle.create(content_type=TEXT)
    await handle.append("x")
    async with StreamHandle(stream_url + "-fork", client=handle.client) as fork:
        await fork.create(forked_from=stream_url)
        await handle.delete()
        with pytest.raises(GoneError) as caught:
            await handle.head()
        assert caught.value.status == 410
        assert not await handle.exists()
        with pytest.raises(GoneError):
            await handle.append("y")
        with pytest.raises(GoneError):
            await handle.delete()
        with pytest.raises(GoneError):
            await handle.close()
        with pytest.raises(StreamConfigMismatchError):
            await handle.create(content_type=TEXT)
        assert await read_all(fork) == b"x"


# -- append ----------------------------------------------------------------------------------


async def test_append_bytes_and_text_to_a_text_stream(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    first = await handle.append(b"caf")
    second = await handle.append("é ✓")
    assert first.next_offset
    assert second.next_offset
    assert second.next_offset > first.next_offset
    assert not second.closed
    assert await read_all(handle) == "café ✓".encode()


class Point(pydantic.BaseModel):
    x: int
    y: int


async def test_json_append_is_one_message_per_call(handle: StreamHandle) -> None:
    await handle.create(content_type=JSON)
    await handle.append({"a": 1})
    await handle.append([1, 2])  # one message whose value is a list
    await handle.append('{"pre": "serialised"}')
    await handle.append(b"[3, 4]")
    await handle.append(5)
    await handle.append(True)
    await handle.append(None)
    await handle.append('"it\'s a string"')
    await handle.append(Point(x=1, y=2))
    assert await read_json(handle) == [
        {"a": 1},
        [1, 2],
        {"pre": "serialised"},
        [3, 4],
        5,
        True,
        None,
        "it's a string",
        {"x": 1, "y": 2},
    ]


async def test_append_many(stream_url: str, handle: StreamHandle) -> None:
    await handle.create(content_type=JSON)
    await handle.append_many([{"n": 1}, [2], "3"])
    assert await read_json(handle) == [{"n": 1}, [2], 3]
    async with StreamHandle(stream_url + "-bytes", client=handle.client) as raw:
        await raw.create()
        await raw.append_many([b"ab", "cd", bytearray(b"ef")])
        assert await read_all(raw) == b"abcdef"


async def test_append_learns_the_content_type_with_one_head(
    stream_url: str, handle: StreamHandle
) -> None:
    await handle.create(content_type=JSON)
    async with StreamHandle(stream_url, client=handle.client) as fresh:
        before = fresh.content_type
        await fresh.append([1])
        assert before is None
        assert fresh.content_type == JSON
    assert await read_json(handle) == [[1]]


async def test_empty_appends_fail_locally(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    tail = (await handle.head()).next_offset
    for empty in (b"", ""):
        with pytest.raises(EmptyAppendError) as caught:
            await handle.append(empty)
        assert caught.value.status is None  # refused locally: nothing was sent
    with pytest.raises(EmptyAppendError):
        await handle.append_many([])
    assert (await handle.head()).next_offset == tail


async def test_invalid_json_text_is_a_400(handle: StreamHandle) -> None:
    await handle.create(content_type=JSON)
    with pytest.raises(BadRequestError) as caught:
        await handle.append("{not json")
    assert caught.value.status == 400
    assert isinstance(caught.value, InvalidJsonError)
    assert caught.value.code == "PARSE_ERROR"


async def test_stream_seq_must_increase(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    await handle.append("a", seq=9)
    await handle.append("b", seq=10)  # zero-padded, so 10 sorts after 9
    with pytest.raises(SequenceConflictError) as caught:
        await handle.append("c", seq=10)
    assert caught.value.code == "SEQUENCE_CONFLICT"
    await handle.append("d", seq="0000000000000011")
    assert await read_all(handle) == b"abd"


async def test_append_with_wrong_content_type_is_a_config_conflict(
    stream_url: str, handle: StreamHandle
) -> None:
    await handle.create(content_type=TEXT)
    async with StreamHandle(stream_url, client=handle.client, content_type=JSON) as wrong:
        with pytest.raises(StreamConfigMismatchError):
            await wrong.append({"a": 1})


async def test_append_to_a_missing_stream(stream_url: str, handle: StreamHandle) -> None:
    with pytest.raises(NotFoundError):
        await handle.append("x")  # the HEAD that learns the type finds nothing
    async with StreamHandle(stream_url, client=handle.client, content_type=TEXT) as known:
        with pytest.raises(NotFoundError) as caught:
            await known.append("x")
        assert caught.value.code == "NOT_FOUND"


# -- close -----------------------------------------------------------------------------------


async def test_append_and_close_then_appends_fail(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    result = await handle.append("last", close=True)
    assert result.closed
    with pytest.raises(StreamClosedError) as caught:
        await handle.append("late")
    assert caught.value.final_offset == result.next_offset
    assert caught.value.status == 409


async def test_close_is_idempotent(handle: StreamHandle) -> None:
    await handle.create(content_type=TEXT)
    await handle.append("data")
    first = await handle.close()
    assert first.closed
    assert first.final_offset
    second = await handle.close()
    assert second.final_offset == first.final_offset
    info = await handle.head()
    assert info.closed
    assert info.next_offset == first.final_offset


async def test_close_with_final_message(handle: StreamHandle) -> None:
    await handle.create(content_type=JSON)
    result = await handle.close(final={"type": "done"})
    assert result.final_offset == (await handle.head()).next_offset
    assert await read_json(handle) == [{"type": "done"}]
    with pytest.raises(StreamClosedError):
        await handle.close(final={"type": "again"})


async def test_close_a_missing_stream(handle: StreamHandle) -> None:
    with pytest.raises(NotFoundError):
        await handle.close()


# -- head / exists / delete ------------------------------------------------------------------


async def test_head_exists_and_delete(handle: StreamHandle) -> None:
    assert not await handle.exists()
    with pytest.raises(NotFoundError) as caught:
        await handle.head()
    assert caught.value.status == 404
    await handle.create(content_type=TEXT)
    await handle.append("abc")
    info = await handle.head()
    assert info.content_type == TEXT
    assert info.next_offset
    assert not info.closed
    assert info.etag
    assert await handle.exists()
    await handle.delete()
    assert not await handle.exists()
    with pytest.raises(NotFoundError):
        await handle.delete()


# -- connections, headers, helpers -----------------------------------------------------------


async def test_callable_headers_and_params_are_called_on_every_request(stream_url: str) -> None:
    calls = {"header": 0, "param": 0}

    def token() -> str:
        calls["header"] += 1
        return f"Bearer t{calls['header']}"

    async def tenant() -> str:
        calls["param"] += 1
        return "acme"

    async with StreamHandle(
        stream_url, headers={"Authorization": token}, params={"tenant": tenant}
    ) as handle:
        await handle.create(content_type=TEXT)
        await handle.append("x")
        await handle.head()
    assert calls == {"header": 3, "param": 3}


async def test_owned_client_is_closed_and_shared_client_is_not(
    stream_url: str, server: ReferenceServer
) -> None:
    async with StreamHandle(stream_url) as owned:
        await owned.create()
    assert owned.client.is_closed
    async with httpx.AsyncClient() as shared:
        handles = [StreamHandle(f"{stream_url}-{i}", client=shared) for i in range(5)]
        for h in handles:
            assert h.client is shared
            await h.create(content_type=TEXT)
            await h.append("x")
            await h.aclose()
        assert not shared.is_closed
        assert (await shared.get(f"{stream_url}-4", params={"offset": "-1"})).text == "x"


async def test_durable_stream_is_an_alias() -> None:
    assert DurableStream is StreamHandle


async def test_module_level_helpers(stream_url: str) -> None:
    created = await durable_streams.create(stream_url, content_type=JSON)
    assert created.created
    appended = await durable_streams.append(stream_url, {"k": "v"}, content_type=JSON)
    info = await durable_streams.head(stream_url)
    assert info.next_offset == appended.next_offset
    assert info.content_type == JSON
    closed = await durable_streams.close(stream_url)
    assert closed.final_offset == appended.next_offset
    await durable_streams.delete(stream_url)
    with pytest.raises(NotFoundError):
        await durable_streams.head(stream_url)


async def test_plain_append_with_caller_producer_headers_reports_the_server_echo(
    handle: StreamHandle,
) -> None:
    await handle.create(content_type="text/plain")
    producer = {"Producer-Id": "manual", "Producer-Epoch": "0", "Producer-Seq": "0"}
    first = await handle.append("once", headers=producer)
    again = await handle.append("once", headers=producer)
    assert (first.duplicate, first.producer_epoch, first.producer_seq) == (False, 0, 0)
    assert (again.duplicate, again.producer_epoch, again.producer_seq) == (True, 0, 0)
    plain = await handle.append("plain")
    assert (plain.duplicate, plain.producer_epoch, plain.producer_seq) == (False, None, None)
    assert await (await handle.stream()).text() == "onceplain"
