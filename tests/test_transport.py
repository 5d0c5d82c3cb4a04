"""Request building and transport error mapping (respx; no server)."""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from durable_streams import (
    DEFAULT_TIMEOUT,
    DurableStreamError,
    InvalidArgumentError,
    NetworkError,
    NotFoundError,
    ParseError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
)
from durable_streams._protocol import header_int
from durable_streams._transport import (
    DECODE_STEP,
    ERROR_BODY_BYTES,
    MAX_BUFFERED_BODY,
    MAX_TRAILING_BYTES,
    RATIO_GRACE_BYTES,
    Transport,
    error_body,
    iter_body,
    read_body,
    response_flag,
)

pytestmark = pytest.mark.anyio

URL = "http://streams.test/v1/stream/s"


def transport(url: object = URL, **kwargs: object) -> Transport:
    options: dict[str, object] = {
        "client": None,
        "headers": None,
        "params": None,
        "timeout": None,
        "retry": None,
    }
    options.update(kwargs)
    return Transport(url, **options)  # type: ignore[arg-type]


@pytest.fixture
async def mock() -> AsyncIterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def test_query_is_sorted_and_percent_encoded() -> None:
    t = transport(URL + "?b=2", params={"zeta": "z z", "alpha": "ä/&="})
    request = await t.build(
        "GET",
        protocol_params={"offset": "0_1/,&=?", "live": "long-poll", "cursor": "7"},
        params={"mid": "m"},
    )
    assert request.url.query.decode() == (
        "alpha=%C3%A4%2F%26%3D&b=2&cursor=7&live=long-poll&mid=m&offset=0_1%2F%2C%26%3D%3F&zeta=z%20z"
    )
    assert request.url.path == "/v1/stream/s"


async def test_protocol_params_beat_user_params() -> None:
    t = transport(params={"offset": "evil"})
    request = await t.build("GET", protocol_params={"offset": "-1"}, params={"live": "sse"})
    assert request.url.params["offset"] == "-1"
    assert request.url.params["live"] == "sse"


async def test_no_query_when_there_are_no_params() -> None:
    request = await transport().build("HEAD")
    assert str(request.url) == URL


async def test_protocol_headers_beat_user_headers_case_insensitively() -> None:
    t = transport(headers={"Content-Type": "evil/type", "STREAM-SEQ": "9", "X-Trace": "t"})
    request = await t.build(
        "POST",
        protocol_headers={"content-type": "text/plain", "stream-seq": "0001"},
        headers={"Stream-Closed": "false", "X-Call": "c"},
    )
    assert request.headers.get_list("content-type") == ["text/plain"]
    assert request.headers.get_list("stream-seq") == ["0001"]
    assert request.headers["stream-closed"] == "false"
    assert request.headers["x-trace"] == "t"
    assert request.headers["x-call"] == "c"
    overridden = await t.build(
        "POST", protocol_headers={"stream-closed": "true"}, headers={"Stream-Closed": "false"}
    )
    assert overridden.headers.get_list("stream-closed") == ["true"]


async def test_callables_are_called_on_every_build() -> None:
    counter = {"sync": 0, "async": 0}

    def sync_token() -> str:
        counter["sync"] += 1
        return f"Bearer {counter['sync']}"

    async def async_param() -> str:
        counter["async"] += 1
        return str(counter["async"])

    t = transport(headers={"Authorization": sync_token}, params={"sig": async_param})
    first = await t.build("GET")
    second = await t.build("GET")
    assert first.headers["authorization"] == "Bearer 1"
    assert second.headers["authorization"] == "Bearer 2"
    assert second.url.params["sig"] == "2"
    assert counter == {"sync": 2, "async": 2}


async def test_callable_returning_a_non_str_is_an_invalid_argument() -> None:
    t = transport(headers={"X-Token": lambda: 42})
    with pytest.raises(InvalidArgumentError) as caught:
        await t.build("GET")
    assert caught.value.field == "x-token"


async def test_callable_returning_a_bad_header_value_is_refused() -> None:
    t = transport(headers={"Authorization": lambda: "Bearer x\r\nX-Injected: 1"})
    with pytest.raises(InvalidArgumentError) as caught:
        await t.build("GET")
    assert "Bearer" not in str(caught.value)  # the value may be a secret


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": 5},
        {"X-A": "é"},
        {"X-A": "line\nbreak"},
        {"Bad Name": "v"},
        {"": "v"},
        ["not", "a", "mapping"],
    ],
)
def test_invalid_headers_are_refused_at_construction(headers: object) -> None:
    with pytest.raises(InvalidArgumentError):
        transport(headers=headers)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/s",
        "/relative/path",
        "http://",
        "http://h:notaport/s",
        "http://[::1/s",
        123,
        None,
        b"http://h/s",
    ],
)
def test_invalid_urls_are_invalid_arguments(url: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        transport(url)
    assert caught.value.field == "url"


def test_url_password_is_not_echoed_in_url_errors() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        transport("http://u:hunter2@h:bad/s")
    assert "hunter2" not in str(caught.value)


def test_httpx_url_is_accepted() -> None:
    assert transport(httpx.URL(URL)).url == URL


def test_timeouts() -> None:
    assert transport().timeout is None
    assert transport().client.timeout == DEFAULT_TIMEOUT
    assert DEFAULT_TIMEOUT.read is not None
    assert DEFAULT_TIMEOUT.read > 30  # outlasts the reference server's 30 s long-poll
    for finite in (DEFAULT_TIMEOUT.connect, DEFAULT_TIMEOUT.write, DEFAULT_TIMEOUT.pool):
        assert finite is not None
    assert transport(timeout=5).timeout == httpx.Timeout(5.0)
    custom = httpx.Timeout(1.0, read=90.0)
    assert transport(timeout=custom).timeout is custom
    for bad in (0, -1, "5", True, float("nan")):
        with pytest.raises(InvalidArgumentError) as caught:
            transport(timeout=bad)
        assert caught.value.field == "timeout"


async def test_per_transport_timeout_reaches_the_request() -> None:
    request = await transport(timeout=httpx.Timeout(2.0, read=70.0)).build("GET")
    assert request.extensions["timeout"]["read"] == 70.0
    assert request.extensions["timeout"]["connect"] == 2.0


def test_wrong_client_and_retry_types_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        transport(client=object())
    with pytest.raises(InvalidArgumentError):
        transport(retry={"max_attempts": 3})
    assert transport(retry=RetryPolicy.disabled()).retry.max_attempts == 1


async def test_send_maps_httpx_errors(mock: respx.MockRouter) -> None:
    t = transport(URL + "?token=s3cret")
    route = mock.get(url__startswith=URL)
    route.side_effect = httpx.ConnectError("refused")
    with pytest.raises(NetworkError) as caught:
        await t.send(await t.build("GET"), operation="read")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "s3cret" not in str(caught.value)
    route.side_effect = httpx.ReadTimeout("slow")
    with pytest.raises(RequestTimeoutError):
        await t.send(await t.build("GET"), operation="read")
    await t.aclose()


async def test_request_checks_the_status(mock: respx.MockRouter) -> None:
    mock.head(URL).respond(404)
    mock.delete(URL).respond(204)
    t = transport()
    with pytest.raises(NotFoundError):
        await t.request("HEAD", operation="head")
    assert (await t.request("DELETE", operation="delete")).status_code == 204
    await t.aclose()


async def test_a_closed_client_gives_a_typed_error() -> None:
    t = transport()
    await t.aclose()
    with pytest.raises(DurableStreamError, match="closed"):
        await t.request("HEAD", operation="head")


async def test_client_ownership() -> None:
    owned = transport()
    assert owned.owns_client
    client = owned.client
    assert not client.is_closed
    await owned.aclose()
    assert owned.client.is_closed
    async with httpx.AsyncClient() as mine:
        shared = transport(client=mine)
        assert not shared.owns_client
        await shared.aclose()
        assert not mine.is_closed


def test_header_helpers() -> None:
    headers = httpx.Headers({"a": "12", "b": "x", "c": "True", "d": "yes"})
    assert header_int(headers, "a") == 12
    assert header_int(headers, "b") is None
    assert header_int(headers, "missing") is None
    assert response_flag(headers, "c")
    assert not response_flag(headers, "d")
    assert not response_flag(headers, "missing")


async def test_buffered_bodies_are_capped(mock: respx.MockRouter) -> None:
    huge = b"x" * (3 * MAX_BUFFERED_BODY)
    mock.post(URL).respond(500, content=huge)
    mock.put(URL).respond(201, content=huge)
    t = transport(retry=RetryPolicy.disabled())
    with pytest.raises(ServerError) as caught:
        await t.request("POST", operation="append", content=b"x")
    assert caught.value.body is not None
    assert len(caught.value.body) < 300
    response = await t.send(await t.build("PUT"), operation="create")
    assert response.content == huge[:MAX_BUFFERED_BODY]
    await t.aclose()


async def test_a_body_cut_short_is_a_network_error(mock: respx.MockRouter) -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"partial"
            raise httpx.RemoteProtocolError("peer closed connection")

    mock.head(URL).respond(200, stream=Broken())
    t = transport()
    with pytest.raises(NetworkError) as caught:
        await t.send(await t.build("HEAD"), operation="head")
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
    await t.aclose()


async def test_httpx_request_logs_of_sdk_requests_are_redacted(
    mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    mock.get(url__startswith="http://streams.test/").respond(200)
    secret_url = "http://user:hunter2pw@streams.test/v1/stream/s?token=hunter2tok"
    t = transport(secret_url, params={"sig": "hunter2sig"})
    with caplog.at_level(logging.INFO, logger="httpx"):
        await t.send(await t.build("GET", protocol_params={"offset": "5"}), operation="read")
        async with httpx.AsyncClient() as plain:  # not the SDK's request: left as httpx logs it
            await plain.get("http://streams.test/other?q=visible")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 2
    assert "hunter2" not in lines[0]
    assert "offset=5" in lines[0]  # protocol parameters stay readable
    assert "q=visible" in lines[1]


# -- response bodies --------------------------------------------------------------------------


def response(status: int = 200, **kw: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", URL), **kw)  # type: ignore[arg-type]


async def test_error_body_reads_at_most_a_bounded_prefix_and_closes() -> None:
    res = response(500, content=b"e" * (ERROR_BODY_BYTES * 3))
    body = await error_body(res)
    assert body == b"e" * ERROR_BODY_BYTES
    assert res.is_closed


class _BrokenStream(httpx.AsyncByteStream):
    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"partial"
        raise httpx.RemoteProtocolError("peer closed connection")


async def test_a_dropped_body_is_a_typed_network_error() -> None:
    res = response(stream=_BrokenStream())
    with pytest.raises(NetworkError):
        await read_body(res, "read", contextlib.nullcontext)


async def test_error_body_tolerates_a_dropped_body() -> None:
    res = response(500, stream=_BrokenStream())
    assert await error_body(res) == b"partial"
    assert res.is_closed


# -- compressed bodies and odd protocol versions ----------------------------------------------


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, data: bytes, size: int = 65536) -> None:
        self.data = data
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start : start + self.size]


def compressed(data: bytes, wbits: int, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


def encoded(body: bytes, encoding: str) -> httpx.Response:
    return response(headers={"content-encoding": encoding}, stream=_Chunks(body))


async def chunks_of(res: httpx.Response, max_ratio: float | None = None) -> list[bytes]:
    return [
        chunk async for chunk in iter_body(res, "read", contextlib.nullcontext, max_ratio=max_ratio)
    ]


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", 31), ("x-gzip", 31), ("deflate", 15), ("deflate", -15), ("identity", 0)],
)
async def test_bodies_are_decoded_here_in_bounded_steps(encoding: str, wbits: int) -> None:
    data = b"".join(b"line %d of a compressible body\n" % n for n in range(200_000))
    body = data if encoding == "identity" else compressed(data, wbits)
    chunks = await chunks_of(encoded(body, encoding), max_ratio=1000)
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= max(DECODE_STEP, 65536)


async def test_a_gzip_bomb_hits_the_ratio_after_bounded_output() -> None:
    bomb = compressed(bytes(64 * 1024 * 1024), 31, level=9)
    seen: list[int] = []

    async def read() -> None:
        chunks = iter_body(encoded(bomb, "gzip"), "read", contextlib.nullcontext, max_ratio=100)
        async for chunk in chunks:
            seen.append(len(chunk))

    with pytest.raises(ParseError, match="max_decompression_ratio=100 "):
        await read()
    assert sum(seen) <= RATIO_GRACE_BYTES + DECODE_STEP


async def test_bytes_after_the_compressed_data_are_dropped_within_a_bound() -> None:
    body = compressed(b"hello" * 1000, 31)
    assert b"".join(await chunks_of(encoded(body + b"junk" * 100, "gzip"))) == b"hello" * 1000
    with pytest.raises(ParseError, match="after the end"):
        await chunks_of(encoded(body + bytes(MAX_TRAILING_BYTES + 1), "gzip"))


async def test_a_corrupt_compressed_body_is_a_parse_error() -> None:
    body = compressed(b"hello" * 1000, 31)
    with pytest.raises(ParseError, match="not valid gzip"):
        await chunks_of(encoded(body[:20] + b"\xff" * 40 + body[60:], "gzip"))


async def test_error_bodies_of_a_bomb_stay_small() -> None:
    bomb = compressed(bytes(16 * 1024 * 1024), 31, level=9)
    res = httpx.Response(
        500,
        request=httpx.Request("GET", URL),
        headers={"content-encoding": "gzip"},
        stream=_Chunks(bomb),
    )
    assert await error_body(res) == bytes(ERROR_BODY_BYTES)


async def test_a_response_in_another_http_version_is_a_network_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, extensions={"http_version": b"HTTP/9.9"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    t = transport(client=client)
    request = await t.build("HEAD")
    with pytest.raises(NetworkError, match=r"HTTP/9\.9"):
        await t.send(request, operation="head")
    await client.aclose()
