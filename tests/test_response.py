"""Unit tests of StreamResponse and Batch: consumption methods, offsets, typed errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pydantic
import pytest
import respx

import durable_streams
from durable_streams import (
    Batch,
    ParseError,
    StreamHandle,
    UsageError,
    ValidationError,
)
from durable_streams._transport import Transport

pytestmark = pytest.mark.anyio

URL = "http://ds.test/v1/stream/r"
JSON = "application/json"
TEXT = "text/plain"
O1, O2, O3 = "0000_0001", "0000_0002", "0000_0003"


def page(
    body: bytes | str,
    offset: str,
    *,
    up_to_date: bool = False,
    closed: bool = False,
    content_type: str = JSON,
) -> httpx.Response:
    headers = {"stream-next-offset": offset, "content-type": content_type}
    if up_to_date:
        headers["stream-up-to-date"] = "true"
    if closed:
        headers["stream-closed"] = "true"
    return httpx.Response(200, headers=headers, content=body)


@pytest.fixture
def pages() -> Iterator[list[httpx.Response]]:
    """Responses served in order to GETs of URL."""
    queue: list[httpx.Response] = []
    with respx.mock() as router:
        router.get(url__startswith=URL).mock(side_effect=lambda request: queue.pop(0))
        yield queue


def make_batch(data: bytes | None, items: list[Any] | None, *, json_mode: bool) -> Batch:
    return Batch(
        data, items, offset=O1, cursor=None, up_to_date=True, closed=False, json_mode=json_mode
    )


# -- Batch ------------------------------------------------------------------------------------


def test_batch_of_a_json_stream() -> None:
    batch = make_batch(None, [{"a": "é"}, 2], json_mode=True)
    assert batch.items == [{"a": "é"}, 2]
    assert json.loads(batch.data) == [{"a": "é"}, 2]
    assert json.loads(batch.text) == [{"a": "é"}, 2]
    assert len(batch) == 2
    assert "é" not in repr(batch)  # content stays out of reprs (and so out of logs)


def test_batch_of_a_byte_stream() -> None:
    batch = make_batch(b"\xff\x00", None, json_mode=False)
    assert batch.data == b"\xff\x00"
    assert len(batch) == 2
    with pytest.raises(UsageError, match="JSON streams"):
        _ = batch.items
    with pytest.raises(ParseError, match="UTF-8") as caught:
        _ = batch.text
    assert caught.value.offset == O1


# -- consuming once ---------------------------------------------------------------------------


async def test_a_response_is_consumed_only_once(pages: list[httpx.Response]) -> None:
    pages.append(page("[1]", O1, up_to_date=True))
    async with StreamHandle(URL) as h, h.stream() as res:
        assert [b.items async for b in res] == [[1]]
        with pytest.raises(UsageError, match="already consumed"):
            await res.body()
        with pytest.raises(UsageError):
            res.iter_bytes()


async def test_json_only_methods_refuse_other_streams(pages: list[httpx.Response]) -> None:
    pages.extend([page("abc", O1, up_to_date=True, content_type=TEXT)] * 2)
    async with StreamHandle(URL) as h:
        with pytest.raises(UsageError, match="JSON stream"):
            (await h.stream()).iter_json()
        with pytest.raises(UsageError, match="JSON stream"):
            await (await h.stream()).subscribe_json(lambda batch: None)


# -- iter_json and offsets --------------------------------------------------------------------


class Event(pydantic.BaseModel):
    n: int


async def test_iter_json_validates_with_a_model_and_names_the_offset(
    pages: list[httpx.Response],
) -> None:
    pages.extend([page('[{"n":1}]', O1), page('[{"n":2},{"n":"x"}]', O2, up_to_date=True)])
    async with StreamHandle(URL) as h:
        res = await h.stream()
        got: list[Event] = []

        async def read() -> None:
            async for event in res.iter_json(model=Event):
                got.append(event)

        with anyio.fail_after(5), pytest.raises(ValidationError) as caught:
            await read()
    assert got == [Event(n=1)]
    assert caught.value.offset == O1
    assert "item 1" in str(caught.value)
    assert isinstance(caught.value, ParseError)
    assert res.offset == O1  # nothing of the invalid batch was handed out


async def test_iter_json_accepts_a_type_adapter(pages: list[httpx.Response]) -> None:
    pages.append(page("[1,2,3]", O1, up_to_date=True))
    async with StreamHandle(URL) as h:
        res = await h.stream()
        items = [i async for i in res.iter_json(model=pydantic.TypeAdapter(int))]
    assert items == [1, 2, 3]


async def test_offset_moves_only_with_the_last_item_of_a_batch(
    pages: list[httpx.Response],
) -> None:
    pages.extend([page("[1,2]", O1), page("[3]", O2, up_to_date=True)])
    async with StreamHandle(URL) as h:
        res = await h.stream()
        offsets = []
        async for item in res.iter_json():
            offsets.append((item, res.offset))
    assert offsets == [(1, "-1"), (2, O1), (3, O2)]


async def test_offset_after_break_never_runs_ahead(pages: list[httpx.Response]) -> None:
    pages.extend([page("[1,2]", O1), page("[3]", O2, up_to_date=True)])
    async with StreamHandle(URL) as h, h.stream() as res:
        async for batch in res:
            assert batch.items == [1, 2]
            break
    assert res.offset == O1  # the batch handed out, not the one after it


# -- bytes and text ---------------------------------------------------------------------------


async def test_iter_text_joins_characters_split_across_responses(
    pages: list[httpx.Response],
) -> None:
    snowman = "☃".encode()
    pages.extend(
        [
            page(b"a" + snowman[:1], O1, content_type=TEXT),
            page(snowman[1:] + b"b", O2, up_to_date=True, content_type=TEXT),
        ]
    )
    async with StreamHandle(URL) as h:
        res = await h.stream()
        text = "".join([t async for t in res.iter_text()])
    assert text == "a☃b"
    assert res.offset == O2


async def test_iter_text_rejects_invalid_utf8(pages: list[httpx.Response]) -> None:
    pages.append(page(b"ok\xff", O1, up_to_date=True, content_type=TEXT))
    async with StreamHandle(URL) as h:
        res = await h.stream()
        with pytest.raises(ParseError, match="UTF-8"):
            _ = [t async for t in res.iter_text()]


async def test_body_of_a_json_stream_is_one_array(pages: list[httpx.Response]) -> None:
    pages.extend([page('[{"a":1}]', O1), page("[]", O2), page(" [2, 3] ", O3, up_to_date=True)])
    async with StreamHandle(URL) as h:
        body = await (await h.stream()).body()
    assert json.loads(body) == [{"a": 1}, 2, 3]


async def test_text_and_json_accumulate_to_up_to_date(pages: list[httpx.Response]) -> None:
    pages.extend(
        [
            page('{"a": ', O1, content_type=TEXT),
            page("[1]}", O2, up_to_date=True, content_type=TEXT),
            page("not json", O3, up_to_date=True, content_type=TEXT),
        ]
    )
    async with StreamHandle(URL) as h:
        assert await (await h.stream(live="long-poll")).json() == {"a": [1]}
        with pytest.raises(ParseError):
            await (await h.stream()).json()


# -- subscribe --------------------------------------------------------------------------------


async def test_subscribe_json_awaits_each_callback_in_order(pages: list[httpx.Response]) -> None:
    pages.extend([page("[1]", O1), page("[2]", O2), page("[]", O2, closed=True)])
    log: list[str] = []

    async def on_batch(batch: Batch) -> None:
        log.append(f"start {batch.items}")
        await anyio.lowlevel.checkpoint()
        log.append(f"end {batch.items}")

    async with StreamHandle(URL) as h:
        res = await h.stream(live="sse")
        with anyio.fail_after(5):
            await res.subscribe_json(on_batch)
    assert log == ["start [1]", "end [1]", "start [2]", "end [2]", "start []", "end []"]
    assert res.closed


async def test_a_failing_callback_stops_the_read(pages: list[httpx.Response]) -> None:
    pages.extend([page("[1]", O1), page("[2]", O2, up_to_date=True)])
    seen: list[Any] = []

    def on_batch(batch: Batch) -> None:
        seen.append(batch.items)
        raise RuntimeError("consumer failed")

    async with StreamHandle(URL) as h:
        res = await h.stream()
        with pytest.raises(RuntimeError, match="consumer failed"):
            await res.subscribe_bytes(on_batch)
    assert seen == [[1]]
    assert res.offset == O1


async def test_subscribe_text(pages: list[httpx.Response]) -> None:
    pages.append(page("hello", O1, up_to_date=True, content_type=TEXT))
    texts: list[str] = []
    async with StreamHandle(URL) as h:
        await (await h.stream()).subscribe_text(lambda batch: texts.append(batch.text))
    assert texts == ["hello"]


# -- closing ----------------------------------------------------------------------------------


async def test_module_level_stream_closes_its_client_when_closed_early(
    pages: list[httpx.Response],
) -> None:
    pages.append(page("[1]", O1, up_to_date=True))
    res = await durable_streams.stream(URL)
    client = res._loop.transport.client
    assert not client.is_closed
    await res.aclose()
    assert client.is_closed


async def test_module_level_stream_closes_its_client_when_the_first_request_fails(
    pages: list[httpx.Response], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[httpx.AsyncClient] = []
    original = Transport.aclose

    async def recording_aclose(self: Transport) -> None:
        await original(self)
        closed.append(self.client)

    monkeypatch.setattr(Transport, "aclose", recording_aclose)
    pages.append(httpx.Response(404))
    with pytest.raises(durable_streams.NotFoundError):
        await durable_streams.stream(URL)
    assert len(closed) == 1
    assert closed[0].is_closed


async def test_a_shared_client_is_left_open(pages: list[httpx.Response]) -> None:
    pages.append(page("[1]", O1, up_to_date=True))
    async with httpx.AsyncClient() as client:
        async with durable_streams.stream(URL, client=client) as res:
            assert await res.json() == [1]
        assert not client.is_closed


def test_retry_with_repr_hides_credentials() -> None:
    hint = durable_streams.RetryWith(headers={"authorization": "Bearer s3cret"}, params={"t": "x1"})
    assert "s3cret" not in repr(hint)
    assert "x1" not in repr(hint)
    assert "authorization" in repr(hint)
