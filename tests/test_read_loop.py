"""Unit tests of ``_read_loop.py``: request building, mode switching, retries, SSE handling.

respx plays the server with scripted responses; every request the loop sends
is recorded so the tests can check what went over the wire. Behaviour against
the real server is in tests/integration/test_read_*.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

import durable_streams._read_loop as read_loop_module
import durable_streams._retry as retry_module
from durable_streams import (
    GoneError,
    InvalidArgumentError,
    InvalidOffsetError,
    LiveMode,
    NetworkError,
    NotFoundError,
    ParseError,
    Position,
    RetryPolicy,
    RetryWith,
    ServerError,
    StreamHandle,
    UnauthorizedError,
)
from durable_streams._errors import DurableStreamError

pytestmark = pytest.mark.anyio

URL = "http://ds.test/v1/stream/s"
JSON = "application/json"
O1, O2, O3 = "0000_0001", "0000_0002", "0000_0003"


def ok(
    body: bytes | str = b"",
    *,
    offset: str,
    status: int = 200,
    up_to_date: bool = False,
    closed: bool = False,
    cursor: str | None = None,
    content_type: str | None = JSON,
    etag: str | None = None,
) -> httpx.Response:
    headers = {"stream-next-offset": offset}
    if up_to_date:
        headers["stream-up-to-date"] = "true"
    if closed:
        headers["stream-closed"] = "true"
    if cursor is not None:
        headers["stream-cursor"] = cursor
    if content_type is not None and status == 200:
        headers["content-type"] = content_type
    if etag is not None:
        headers["etag"] = etag
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, headers=headers, content=content)


def sse(*events: tuple[str, Any], base64: bool = False) -> httpx.Response:
    """An SSE response: ("data", text) and ("control", dict) events."""
    lines = []
    for kind, payload in events:
        data = json.dumps(payload) if kind == "control" else payload
        lines.append(f"event: {kind}\n" + "".join(f"data: {part}\n" for part in data.split("\n")))
    headers = {"content-type": "text/event-stream"}
    if base64:
        headers["stream-sse-data-encoding"] = "base64"
    return httpx.Response(200, headers=headers, content="\n".join(lines).encode() + b"\n")


class Script:
    """Scripted server: answers requests in order and records them."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.responses:
            raise AssertionError(f"unexpected request {request.url}")
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def params(self, index: int) -> dict[str, str]:
        return dict(self.requests[index].url.params)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(retry_module, "_sleep", fake_sleep)
    return recorded


def serve(mock: respx.MockRouter, *responses: httpx.Response | Exception) -> Script:
    script = Script(*responses)
    mock.route(url__startswith=URL).mock(side_effect=script)
    return script


def handle(**kwargs: Any) -> StreamHandle:
    kwargs.setdefault("retry", RetryPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3))
    return StreamHandle(URL, **kwargs)


async def collect(res: Any) -> list[Any]:
    with anyio.fail_after(5):
        return [batch async for batch in res]


# -- request building ------------------------------------------------------------------------


async def test_catch_up_then_long_poll_echoes_cursor_and_sorts_params(
    mock: respx.MockRouter,
) -> None:
    script = serve(
        mock,
        ok("[1]", offset=O1),  # partial chunk: keep catching up
        ok("[2]", offset=O2, up_to_date=True),
        ok(offset=O2, status=204, up_to_date=True, cursor="c1"),
        ok("[3]", offset=O3, up_to_date=True, cursor="c2"),
        ok(offset=O3, status=204, up_to_date=True, closed=True),
    )
    async with handle(params={"zeta": "1", "alpha": "2"}) as h:
        res = await h.stream(live=True)
        batches = await collect(res)
    assert [b.items for b in batches] == [[1], [2], [3], []]
    assert batches[-1].closed
    assert res.closed
    assert res.offset == O3
    queries = [r.url.query.decode() for r in script.requests]
    assert queries[0] == "alpha=2&offset=-1&zeta=1"  # first request never live
    assert queries[1] == f"alpha=2&offset={O1}&zeta=1"
    assert queries[2] == f"alpha=2&live=long-poll&offset={O2}&zeta=1"
    assert queries[3] == f"alpha=2&cursor=c1&live=long-poll&offset={O2}&zeta=1"
    assert queries[4] == f"alpha=2&cursor=c2&live=long-poll&offset={O3}&zeta=1"


async def test_live_false_stops_at_first_up_to_date(mock: respx.MockRouter) -> None:
    script = serve(mock, ok("[1,2]", offset=O1, up_to_date=True))
    async with handle() as h:
        res = await h.stream(offset="-1")
        batches = await collect(res)
    assert [b.items for b in batches] == [[1, 2]]
    assert res.up_to_date
    assert not res.closed
    assert res.status == 200
    assert len(script.requests) == 1


async def test_offset_now_not_live_is_one_request(mock: respx.MockRouter) -> None:
    script = serve(mock, ok("[]", offset=O2, up_to_date=True))
    async with handle() as h:
        res = await h.stream(offset="now")
        assert res.offset == "now"
        batches = await collect(res)
    assert script.params(0) == {"offset": "now"}
    assert [(b.items, b.up_to_date) for b in batches] == [([], True)]
    assert res.offset == O2


async def test_offset_now_live_sends_first_request_live(mock: respx.MockRouter) -> None:
    script = serve(
        mock,
        ok(offset=O2, status=204, up_to_date=True, cursor="c1"),
        ok(offset=O2, status=204, up_to_date=True, closed=True),
    )
    async with handle(content_type=JSON) as h:
        res = await h.stream(offset="now", live="long-poll")
        assert res.status == 204
        batches = await collect(res)
    assert script.params(0) == {"offset": "now", "live": "long-poll"}
    assert script.params(1) == {"offset": O2, "live": "long-poll", "cursor": "c1"}
    assert [(b.up_to_date, b.closed) for b in batches] == [(True, False), (True, True)]


async def test_repeated_timeouts_yield_nothing_but_advance(mock: respx.MockRouter) -> None:
    serve(
        mock,
        ok("[]", offset=O1, up_to_date=True),
        ok(offset=O1, status=204, up_to_date=True, cursor="c1"),
        ok(offset=O1, status=204, up_to_date=True, cursor="c2"),
        ok(offset=O1, status=204, up_to_date=True, closed=True),
    )
    async with handle() as h:
        batches = await collect(await h.stream(live="long-poll"))
    # One batch for "caught up" and one for EOF; the timeouts in between are silent.
    assert [(b.up_to_date, b.closed, b.cursor) for b in batches] == [
        (True, False, None),
        (True, True, "c2"),
    ]


@pytest.mark.parametrize(
    ("offset", "live"), [(5, False), ("", False), (True, False), ("-1", "push"), ("-1", 1)]
)
async def test_bad_arguments_raise_typed_errors(
    mock: respx.MockRouter, offset: Any, live: Any
) -> None:
    script = serve(mock)
    async with handle() as h:
        with pytest.raises(InvalidArgumentError):
            await h.stream(offset=offset, live=live)
    assert script.requests == []


# -- status errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("live", [False, True, "sse", "auto"])
@pytest.mark.parametrize("offset", ["-1", "now"])
async def test_404_raises_on_await_in_every_mode(
    mock: respx.MockRouter, live: Any, offset: str
) -> None:
    serve(mock, httpx.Response(404, text="Stream not found"))
    async with handle(content_type=JSON) as h:
        with pytest.raises(NotFoundError) as caught:
            await h.stream(offset=offset, live=live)
    assert caught.value.status == 404


async def test_400_about_the_offset_is_invalid_offset(mock: respx.MockRouter) -> None:
    serve(mock, httpx.Response(400, text="Invalid offset format"))
    async with handle() as h:
        with pytest.raises(InvalidOffsetError):
            await h.stream(offset="garbage")


async def test_410_is_gone_inside_context_manager(mock: respx.MockRouter) -> None:
    serve(mock, httpx.Response(410, text="Stream is gone"))
    async with handle() as h:
        with pytest.raises(GoneError):
            async with h.stream(offset=O1):
                pass


# -- retries and on_error ------------------------------------------------------------------------


async def test_retries_from_the_same_offset_and_on_error_sees_each_failure(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    script = serve(
        mock,
        ok("[1]", offset=O1),
        httpx.Response(503, text="busy"),
        httpx.ConnectError("refused"),
        ok("[2]", offset=O2, up_to_date=True),
    )
    seen: list[DurableStreamError] = []
    async with handle() as h:
        batches = await collect(await h.stream(on_error=seen.append))
    assert [b.items for b in batches] == [[1], [2]]
    assert [type(e) for e in seen] == [ServerError, NetworkError]
    assert len(slept) == 2
    assert [script.params(i)["offset"] for i in range(4)] == ["-1", O1, O1, O1]


async def test_retry_policy_gives_up(mock: respx.MockRouter, slept: list[float]) -> None:
    serve(mock, *[httpx.Response(500) for _ in range(3)])
    async with handle() as h:
        with pytest.raises(ServerError):
            await h.stream()
    assert len(slept) == 2  # max_attempts=3


async def test_unauthorized_without_hook_is_not_retried(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    script = serve(mock, httpx.Response(401))
    async with handle() as h:
        with pytest.raises(UnauthorizedError):
            await h.stream()
    assert len(script.requests) == 1
    assert slept == []


async def test_async_hook_refreshes_credentials_on_401(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    script = serve(
        mock,
        ok("[1]", offset=O1),
        httpx.Response(401),
        ok("[2]", offset=O2, up_to_date=True),
    )

    async def refresh(error: DurableStreamError) -> RetryWith | None:
        assert isinstance(error, UnauthorizedError)
        return RetryWith(headers={"authorization": "Bearer new"}, params={"sig": "fresh"})

    async with handle(headers={"authorization": "Bearer old"}) as h:
        batches = await collect(await h.stream(on_error=refresh))
    assert [b.items for b in batches] == [[1], [2]]
    assert [r.headers["authorization"] for r in script.requests] == [
        "Bearer old",
        "Bearer old",
        "Bearer new",
    ]
    assert script.params(2)["sig"] == "fresh"
    assert slept == []  # new credentials are tried at once


async def test_hook_that_raises_stops_the_session(mock: respx.MockRouter) -> None:
    serve(mock, httpx.Response(503))

    class Stop(Exception):
        pass

    def stop(error: DurableStreamError) -> None:
        raise Stop

    async with handle() as h:
        with pytest.raises(Stop):
            await h.stream(on_error=stop)


async def test_hook_returning_garbage_is_a_typed_error(mock: respx.MockRouter) -> None:
    serve(mock, httpx.Response(503))
    async with handle() as h:
        with pytest.raises(InvalidArgumentError, match="RetryWith"):
            await h.stream(on_error=lambda error: "retry please")  # type: ignore[arg-type,return-value]


async def test_auth_retries_are_bounded(mock: respx.MockRouter) -> None:
    script = serve(mock, *[httpx.Response(403) for _ in range(10)])
    async with handle() as h:
        with pytest.raises(DurableStreamError) as caught:
            await h.stream(on_error=lambda error: RetryWith(headers={"x-token": "t"}))
    assert caught.value.status == 403
    assert len(script.requests) == 4  # the first try and three refreshes


# -- bad bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ['[{"a": 1}, {"b"', '{"not": "an array"}', "\xff"])
async def test_bad_json_is_a_parse_error_naming_the_offset(
    mock: respx.MockRouter, slept: list[float], body: str
) -> None:
    script = serve(mock, ok("[0]", offset=O1), ok(body, offset=O2, up_to_date=True))
    async with handle() as h:
        res = await h.stream()
        with pytest.raises(ParseError) as caught:
            await collect(res)
    assert caught.value.offset == O1
    assert len(script.requests) == 2  # never retried
    assert slept == []


async def test_missing_next_offset_is_a_parse_error(mock: respx.MockRouter) -> None:
    serve(mock, httpx.Response(200, headers={"content-type": JSON}, content=b"[]"))
    async with handle() as h:
        with pytest.raises(ParseError, match="Stream-Next-Offset"):
            await collect(await h.stream())


async def test_a_server_making_no_progress_does_not_spin(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    serve(mock, ok("[]", offset=O1), *[ok("[]", offset=O1) for _ in range(5)])
    async with handle() as h:
        with pytest.raises(ServerError, match="no progress"):
            await collect(await h.stream(offset=O1))
    assert len(slept) == 2


async def test_streamed_body_resumes_after_a_drop_without_duplicates(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"ab"
            yield b"cd"
            raise httpx.ReadError("connection reset")

    dropped = httpx.Response(
        200,
        headers={"stream-next-offset": O1, "content-type": "text/plain"},
        stream=Dropping(),
    )
    serve(mock, dropped, ok("abcdef", offset=O1, up_to_date=True, content_type="text/plain"))
    async with handle() as h:
        res = await h.stream()
        with anyio.fail_after(5):
            chunks = [chunk async for chunk in res.iter_bytes()]
    # "ab" was handed out before the drop; the retry skips exactly that prefix.
    assert b"".join(chunks) == b"abcdef"
    assert chunks[0] == b"ab"
    assert res.offset == O1
    assert len(slept) == 1


async def test_large_json_body_is_parsed_as_it_arrives_and_resumes_without_duplicates(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    items = [{"n": n, "text": f"item {n}, [x] {{y}}"} for n in range(40_000)]
    body = json.dumps(items).encode()  # about 1.4 MiB: more than one parsing step
    handed_out_before_drop: list[int] = []

    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for start in range(0, 1_200_000, 65_536):
                yield body[start : min(start + 65_536, 1_200_000)]
            handed_out_before_drop.append(len(received))
            raise httpx.ReadError("connection reset")

    headers = {"stream-next-offset": O1, "content-type": JSON}
    dropped = httpx.Response(200, headers=headers, stream=Dropping())
    serve(mock, dropped, ok(body, offset=O1, up_to_date=True))
    received: list[Any] = []
    async with handle() as h:
        res = await h.stream()
        with anyio.fail_after(5):
            async for item in res.iter_json():
                received.append(item)
    assert received == items
    assert len(handed_out_before_drop) == 1
    assert handed_out_before_drop[0] > 20_000  # parsed while the body arrived
    assert res.offset == O1
    assert len(slept) == 1


async def test_invalid_json_in_a_large_body_is_a_parse_error(mock: respx.MockRouter) -> None:
    body = b"[" + b",".join(b'{"n": %d}' % n for n in range(200_000)) + b", oops]"
    serve(mock, ok(body, offset=O1, up_to_date=True))
    async with handle() as h:
        res = await h.stream()
        with pytest.raises(ParseError, match="invalid JSON"):
            async for _item in res.iter_json():
                pass
    assert res.offset == "-1"  # nothing was committed from the broken response


# -- conditional reads ---------------------------------------------------------------------


async def test_empty_tail_read_is_revalidated_with_etag(mock: respx.MockRouter) -> None:
    script = serve(
        mock,
        ok("[]", offset=O1, up_to_date=True, etag='"e1"'),
        httpx.Response(304, headers={"etag": '"e1"'}),
    )
    async with handle() as h:
        first = await collect(await h.stream(offset=O1))
        second = await collect(await h.stream(offset=O1))
    assert "if-none-match" not in script.requests[0].headers
    assert script.requests[1].headers["if-none-match"] == '"e1"'
    assert [(b.items, b.up_to_date, b.offset) for b in first + second] == [
        ([], True, O1),
        ([], True, O1),
    ]


# -- SSE -----------------------------------------------------------------------------------


async def test_sse_reconnects_from_the_last_control_and_discards_partial_data(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    script = serve(
        mock,
        ok("[1]", offset=O1, up_to_date=True),
        # Ends (after > 0 controls, with data) with data that no control confirmed.
        sse(
            ("data", "[2]"),
            ("control", {"streamNextOffset": O2, "streamCursor": "c1", "upToDate": True}),
            ("data", "[99]"),
        ),
        sse(
            ("data", "[3]"),
            ("control", {"streamNextOffset": O3, "streamClosed": True}),
        ),
    )
    async with handle() as h:
        res = await h.stream(live="sse")
        batches = await collect(res)
    assert [b.items for b in batches] == [[1], [2], [3]]
    assert batches[-1].closed
    assert res.closed
    assert script.params(1) == {"offset": O1, "live": "sse"}
    assert script.params(2) == {"offset": O2, "live": "sse", "cursor": "c1"}
    assert slept == []  # a healthy connection that ended is reopened at once


async def test_sse_base64_and_text_payloads(mock: respx.MockRouter) -> None:
    serve(
        mock,
        sse(
            ("data", "AAEC"),
            ("data", "/w=="),
            ("control", {"streamNextOffset": O1, "upToDate": True, "streamCursor": "c"}),
            ("control", {"streamNextOffset": O1, "streamClosed": True}),
            base64=True,
        ),
    )
    async with handle(content_type="application/octet-stream") as h:
        batches = await collect(await h.stream(offset="now", live="sse"))
    assert [b.data for b in batches] == [b"\x00\x01\x02\xff", b""]


async def test_sse_malformed_control_is_a_parse_error(mock: respx.MockRouter) -> None:
    serve(mock, sse(("control", "not json")))
    async with handle(content_type="text/plain") as h:
        with pytest.raises(ParseError):
            await collect(await h.stream(offset="now", live="sse"))


async def test_sse_mode_rejects_a_non_event_stream(mock: respx.MockRouter) -> None:
    serve(mock, ok("[]", offset=O1, up_to_date=True))
    async with handle(content_type=JSON) as h:
        with pytest.raises(ParseError, match="text/event-stream"):
            await h.stream(offset="now", live="sse")


async def test_auto_falls_back_to_long_poll_when_sse_is_not_served(
    mock: respx.MockRouter,
) -> None:
    script = serve(
        mock,
        ok("[]", offset=O1, up_to_date=True),  # a proxy answering SSE with plain JSON
        ok(offset=O1, status=204, up_to_date=True, closed=True),
    )
    async with handle(content_type=JSON) as h:
        batches = await collect(await h.stream(offset="now", live="auto"))
    assert script.params(0)["live"] == "sse"
    assert script.params(1)["live"] == "long-poll"
    assert batches[-1].closed


async def test_auto_falls_back_after_connections_end_early(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    empty_sse = [sse() for _ in range(3)]
    script = serve(
        mock,
        ok("[1]", offset=O1, up_to_date=True),
        *empty_sse,
        ok("[2]", offset=O2, up_to_date=True, cursor="c"),
        ok(offset=O2, status=204, up_to_date=True, closed=True),
    )
    async with handle() as h:
        res = await h.stream(live="auto")
        batches = await collect(res)
    assert [b.items for b in batches] == [[1], [2], []]
    assert [script.params(i).get("live") for i in range(6)] == [
        None,
        "sse",
        "sse",
        "sse",
        "long-poll",
        "long-poll",
    ]
    assert len(slept) == 2  # backoff between early ends, none after falling back


async def test_sse_mode_gives_up_when_connections_keep_ending_early(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    serve(mock, *[sse() for _ in range(3)])
    bounded = RetryPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3)
    async with handle(content_type="text/plain") as h:
        res = await h.stream(offset="now", live="sse", retry=bounded)
        with pytest.raises(NetworkError, match="ended early"):
            await collect(res)


async def test_live_reads_retry_past_the_handles_attempt_limit(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    # A follower must outlive a server restart: the handle allows 3 attempts, the live
    # read keeps going through 20 failures and then reads on.
    failures: list[httpx.Response | Exception] = [httpx.ConnectError("refused") for _ in range(20)]
    script = serve(
        mock,
        *failures,
        sse(("data", "hi"), ("control", {"streamNextOffset": O2, "streamClosed": True})),
    )
    async with handle(content_type="text/plain") as h:
        batches = await collect(await h.stream(offset="now", live="sse"))
    assert [b.data for b in batches] == [b"hi"]
    assert len(script.requests) == 21
    assert len(slept) == 20
    assert max(slept) <= 0.02  # the handle's delays, capped as it says


async def test_a_catch_up_read_keeps_the_handles_attempt_limit(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    serve(mock, *[httpx.ConnectError("refused") for _ in range(3)])
    async with handle(content_type="text/plain") as h:
        with pytest.raises(NetworkError):
            await h.stream(offset="-1", live=False)
    assert len(slept) == 2


async def test_on_error_can_stop_an_endless_live_retry(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    seen: list[DurableStreamError] = []

    def stop_after_five(error: DurableStreamError) -> None:
        seen.append(error)
        if len(seen) == 5:
            raise error

    serve(mock, *[httpx.ConnectError("refused") for _ in range(10)])
    async with handle(content_type="text/plain") as h:
        with pytest.raises(NetworkError):
            await h.stream(offset="now", live="long-poll", on_error=stop_after_five)
    assert len(seen) == 5


async def test_a_policy_without_retries_stays_so_for_live_reads(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    serve(mock, httpx.ConnectError("refused"))
    async with handle(content_type="text/plain", retry=RetryPolicy.disabled()) as h:
        with pytest.raises(NetworkError):
            await h.stream(offset="now", live="long-poll")
    assert slept == []


async def test_unknown_content_type_is_learned_before_sse_at_now(
    mock: respx.MockRouter,
) -> None:
    head = httpx.Response(200, headers={"content-type": JSON, "stream-next-offset": O1})
    script = serve(
        mock,
        head,
        sse(
            ("data", "[1,\n2]"),
            ("control", {"streamNextOffset": O2, "streamClosed": True}),
        ),
    )
    async with handle() as h:
        batches = await collect(await h.stream(offset="now", live="sse"))
    assert script.requests[0].method == "HEAD"
    assert batches[0].items == [1, 2]


async def test_auto_falls_back_after_sse_connections_fail(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    script = serve(
        mock,
        *[httpx.ReadError("reset by proxy") for _ in range(3)],
        ok(offset=O1, status=204, up_to_date=True, closed=True),
    )
    async with handle(content_type=JSON) as h:
        batches = await collect(await h.stream(offset="now", live="auto"))
    assert [script.params(i)["live"] for i in range(4)] == ["sse", "sse", "sse", "long-poll"]
    assert batches[-1].closed
    assert len(slept) == 2


async def test_live_requests_outlast_the_server_wait_even_with_a_short_timeout(
    mock: respx.MockRouter,
) -> None:
    script = serve(
        mock,
        ok("[]", offset=O1, up_to_date=True),
        ok(offset=O1, status=204, up_to_date=True, closed=True),
    )
    async with handle(timeout=2.0) as h:
        await collect(await h.stream(live="long-poll"))
    catch_up, live = (r.extensions["timeout"] for r in script.requests)
    assert catch_up["read"] == 2.0
    assert live["read"] == 65.0
    assert live["connect"] == 2.0


@pytest.mark.parametrize("status", [400, 405, 501])
async def test_auto_falls_back_when_the_server_refuses_sse(
    mock: respx.MockRouter, status: int
) -> None:
    script = serve(
        mock,
        httpx.Response(status, text="unsupported live mode"),
        ok(offset=O1, status=204, up_to_date=True, closed=True),
    )
    async with handle(content_type=JSON) as h:
        batches = await collect(await h.stream(offset="now", live="auto"))
    assert [script.params(i)["live"] for i in range(2)] == ["sse", "long-poll"]
    assert batches[-1].closed


async def test_auto_does_not_hide_a_bad_offset(mock: respx.MockRouter) -> None:
    script = serve(mock, httpx.Response(400, text="Invalid offset format"))
    async with handle(content_type=JSON) as h:
        with pytest.raises(InvalidOffsetError):
            await h.stream(offset="now", live="auto")
    assert len(script.requests) == 1


@pytest.mark.parametrize("live", ["sse", "long-poll"])
async def test_aclose_from_another_task_ends_a_waiting_read(
    mock: respx.MockRouter, live: LiveMode
) -> None:
    class Hanging(httpx.AsyncByteStream):
        """A response body that never ends (a server that never answers more)."""

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if live == "sse":
                yield (
                    b'event: control\ndata: {"streamNextOffset": "' + O1.encode() + b'", '
                    b'"streamCursor": "c", "upToDate": true}\n\n'
                )
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

    headers = {"content-type": "text/event-stream"} if live == "sse" else {}
    if live == "long-poll":
        headers = {"stream-next-offset": O1, "content-type": JSON}
    serve(
        mock,
        ok("[]", offset=O1, up_to_date=True),
        httpx.Response(200, headers=headers, stream=Hanging()),
    )
    got: list[Any] = []
    async with handle(content_type=JSON) as h:
        res = await h.stream(offset=O1, live=live)
        first = anyio.Event()

        async def read() -> None:
            async for batch in res:
                got.append(batch)
                first.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await first.wait()
                await anyio.wait_all_tasks_blocked()
                await res.aclose()
    assert [b.up_to_date for b in got] == [True]


# -- starting from a position -----------------------------------------------------------------


@pytest.mark.parametrize("consume", ["iter_json", "batches", "json"])
async def test_a_position_skip_carries_over_when_responses_split_differently(
    mock: respx.MockRouter, consume: str
) -> None:
    # The position was taken inside one large response; this time the server splits the
    # same data into two responses, the first shorter than what is to be skipped.
    script = serve(
        mock,
        ok("[1, 2]", offset=O2),
        ok("[3, 4, 5]", offset=O3, up_to_date=True),
    )
    async with handle(content_type=JSON) as h:
        res = await h.stream(offset=Position(O1, 3), live=False)
        if consume == "iter_json":
            items = [item async for item in res.iter_json()]
        elif consume == "batches":
            items = [item async for batch in res for item in batch.items]
        else:
            items = await res.json()
    assert items == [4, 5]
    assert script.params(0)["offset"] == O1
    assert script.params(1)["offset"] == O2
    assert res.position == Position(O3)


async def test_a_position_skip_is_dropped_from_a_retried_body_once(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    # A response cut after its second item: the retry answers from the same offset and
    # neither the two skipped items nor the one handed out come again.
    class Cut(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"[1, 2, 3,"
            raise httpx.RemoteProtocolError("peer closed connection")

    cut = httpx.Response(
        200, headers={"stream-next-offset": O2, "content-type": JSON}, stream=Cut()
    )
    serve(mock, cut, ok("[1, 2, 3, 4]", offset=O2, up_to_date=True))
    async with handle(content_type=JSON) as h:
        res = await h.stream(offset=Position(O1, 2), live=False)
        items = [item async for item in res.iter_json()]
    assert items == [3, 4]


async def test_a_byte_position_skips_bytes(mock: respx.MockRouter) -> None:
    serve(mock, ok(b"abcdef", offset=O2, up_to_date=True, content_type="text/plain"))
    async with handle(content_type="text/plain") as h:
        res = await h.stream(offset=Position(O1, 4, "bytes"), live=False)
        assert await res.body() == b"ef"


async def test_a_position_at_now_cannot_skip(mock: respx.MockRouter) -> None:
    async with handle(content_type=JSON) as h:
        with pytest.raises(InvalidArgumentError, match="now"):
            await h.stream(offset=Position("now", 1), live=True)


# -- hostile answers: offsets going back, instant empty long-polls ---------------------------


async def test_a_next_offset_lower_than_an_issued_one_is_a_parse_error(
    mock: respx.MockRouter,
) -> None:
    script = serve(mock, ok("[1]", offset=O2), ok("[2]", offset=O1))
    async with handle() as h:
        with pytest.raises(ParseError, match="offsets only grow"):
            await collect(await h.stream())
    assert len(script.requests) == 2


async def test_a_callers_offset_of_the_same_shape_is_compared(mock: respx.MockRouter) -> None:
    serve(mock, ok("[1]", offset=O1))
    async with handle() as h:
        with pytest.raises(ParseError, match="sent back from offset"):
            await collect(await h.stream(offset=O3))


async def test_a_callers_offset_of_another_shape_or_a_sentinel_is_not_compared(
    mock: respx.MockRouter,
) -> None:
    # The reference server accepts "1_5", an offset it never issues, and byte-wise it
    # sorts after every padded one: not comparable.
    serve(mock, ok("[1]", offset=O1, up_to_date=True), ok("[2]", offset=O2, up_to_date=True))
    async with handle() as h:
        assert [b.items for b in await collect(await h.stream(offset="1_5"))] == [[1]]
        assert [b.items for b in await collect(await h.stream(offset="-1"))] == [[2]]


async def test_instant_empty_long_polls_are_paced_and_data_resets_the_pace(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    paced: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        paced.append(seconds)

    monkeypatch.setattr(read_loop_module, "_sleep", fake_sleep)
    empty = ok(status=204, offset=O1, up_to_date=True, cursor="1")
    serve(
        mock,
        ok("[]", offset=O1, up_to_date=True),  # catch-up: never paced
        empty,
        empty,
        empty,
        ok("[1]", offset=O2, up_to_date=True, cursor="2"),
        ok(status=204, offset=O2, up_to_date=True, cursor="2"),
        ok("[]", offset=O2, up_to_date=True, closed=True),
    )
    async with handle() as h:
        batches = await collect(await h.stream(offset=O1, live="long-poll"))
    assert [b.items for b in batches if b.items] == [[1]]
    # 0.1, 0.2, 0.4 after the instant 204s in a row; none after data; 0.1 again after.
    assert paced == [0.1, 0.2, 0.4, 0.1]
