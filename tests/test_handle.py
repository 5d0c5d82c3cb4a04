"""StreamHandle request building and retry decisions (respx; no server, no real sleeping)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import respx

import durable_streams._retry
from durable_streams import (
    AppendOutcomeUnknownError,
    InvalidArgumentError,
    NotFoundError,
    NotSupportedError,
    RetryPolicy,
    SequenceConflictError,
    StreamHandle,
)

pytestmark = pytest.mark.anyio

URL = "http://streams.test/v1/stream/s"
OFFSET = "0000000000000000_0000000000000005"


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(durable_streams._retry, "_sleep", fake_sleep)
    return recorded


@pytest.fixture
async def mock() -> AsyncIterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def handle() -> AsyncIterator[StreamHandle]:
    async with StreamHandle(URL, content_type="text/plain") as h:
        yield h


def appended() -> httpx.Response:
    return httpx.Response(204, headers={"stream-next-offset": OFFSET})


# -- create ----------------------------------------------------------------------------------


async def test_create_sends_every_option(mock: respx.MockRouter) -> None:
    route = mock.put(URL).respond(
        201, headers={"content-type": "application/json", "stream-next-offset": OFFSET}
    )
    async with StreamHandle(URL) as handle:
        result = await handle.create(
            content_type="application/json",
            ttl=60,
            body='[{"a":1}]',
            closed=True,
            forked_from="http://streams.test/v1/stream/source?x=1",
            fork_offset=OFFSET,
            fork_sub_offset=2,
        )
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json"
    assert request.headers["stream-ttl"] == "60"
    assert request.headers["stream-closed"] == "true"
    assert request.headers["stream-forked-from"] == "/v1/stream/source?x=1"
    assert request.headers["stream-fork-offset"] == OFFSET
    assert request.headers["stream-fork-sub-offset"] == "2"
    assert request.content == b'[{"a":1}]'
    assert result.created
    assert result.next_offset == OFFSET


async def test_fork_without_content_type_inherits_it(mock: respx.MockRouter) -> None:
    route = mock.put(URL).respond(201, headers={"content-type": "text/plain"})
    async with StreamHandle(URL) as handle:
        await handle.create(forked_from="/v1/stream/source")
        assert handle.content_type == "text/plain"
    assert "content-type" not in route.calls.last.request.headers


async def test_expires_at_is_sent_in_one_canonical_form(mock: respx.MockRouter) -> None:
    route = mock.put(URL).respond(201)
    instant = datetime(2030, 5, 6, 7, 8, 9, 987654, tzinfo=timezone.utc)
    async with StreamHandle(URL) as handle:
        await handle.create(expires_at=instant)
        await handle.create(expires_at=instant.astimezone(timezone(timedelta(hours=-5))))
        await handle.create(expires_at="2030-05-06T07:08:09Z")
    sent = [call.request.headers["stream-expires-at"] for call in route.calls]
    assert sent == ["2030-05-06T07:08:09.987Z", "2030-05-06T07:08:09.987Z", "2030-05-06T07:08:09Z"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": 5, "expires_at": datetime(2030, 1, 1, tzinfo=timezone.utc)}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"ttl": 1.5}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),
        ({"expires_at": 1893456000}, "expires_at"),
        ({"expires_at": ""}, "expires_at"),
        ({"fork_offset": OFFSET}, "fork_offset"),
        ({"forked_from": "/s", "fork_sub_offset": -1}, "fork_sub_offset"),
        ({"body": {"a": 1}}, "body"),
        ({"forked_from": 5}, "forked_from"),
        ({"forked_from": "/s", "fork_offset": 7}, "fork_offset"),
        ({"content_type": "text/\nplain"}, "content_type"),
        ({"content_type": 5}, "content_type"),
    ],
)
async def test_create_rejects_bad_options_without_sending(
    mock: respx.MockRouter, kwargs: dict[str, object], field: str
) -> None:
    route = mock.put(URL).respond(201)
    async with StreamHandle(URL) as handle:
        with pytest.raises(InvalidArgumentError) as caught:
            await handle.create(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert not route.called


# -- append ----------------------------------------------------------------------------------


async def test_json_append_wraps_one_message_in_an_array(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=appended())
    async with StreamHandle(URL, content_type="application/json") as handle:
        result = await handle.append([1, 2])
        await handle.append('{"raw":true}')
        await handle.append_many([{"a": 1}, "2", [3]])
    bodies = [call.request.content for call in route.calls]
    assert bodies == [b"[[1,2]]", b'[{"raw":true}]', b'[{"a":1},2,[3]]']
    assert json.loads(bodies[0]) == [[1, 2]]
    assert route.calls.last.request.headers["content-type"] == "application/json"
    assert result.next_offset == OFFSET


async def test_append_headers(handle: StreamHandle, mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=appended())
    await handle.append("x", seq=42, close=True)
    await handle.append("y", seq="opaque-b")
    first, second = (call.request for call in route.calls)
    assert first.headers["stream-seq"] == "0000000000000042"
    assert first.headers["stream-closed"] == "true"
    assert first.content == b"x"
    assert second.headers["stream-seq"] == "opaque-b"
    assert "stream-closed" not in second.headers


@pytest.mark.parametrize("seq", [-1, "", True, 1.5])
async def test_bad_seq_is_refused(
    handle: StreamHandle, mock: respx.MockRouter, seq: object
) -> None:
    route = mock.post(URL).mock(return_value=appended())
    with pytest.raises(InvalidArgumentError):
        await handle.append("x", seq=seq)  # type: ignore[arg-type]
    assert not route.called


@pytest.mark.parametrize("items", ["abc", b"abc", {"a": 1}])
async def test_append_many_refuses_a_single_value(
    handle: StreamHandle, mock: respx.MockRouter, items: object
) -> None:
    route = mock.post(URL).mock(return_value=appended())
    with pytest.raises(InvalidArgumentError) as caught:
        await handle.append_many(items)  # type: ignore[arg-type]
    assert caught.value.field == "items"
    assert not route.called


async def test_close_only_sends_no_body(handle: StreamHandle, mock: respx.MockRouter) -> None:
    route = mock.post(URL).respond(
        204, headers={"stream-next-offset": OFFSET, "stream-closed": "true"}
    )
    result = await handle.close()
    request = route.calls.last.request
    assert request.content == b""
    assert request.headers["stream-closed"] == "true"
    assert result.final_offset == OFFSET


# -- retry decisions for plain appends -------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        httpx.Response(429, headers={"retry-after": "1"}),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no route"),
    ],
)
async def test_plain_append_retries_failures_that_prove_nothing_was_stored(
    handle: StreamHandle,
    mock: respx.MockRouter,
    slept: list[float],
    failure: httpx.Response | Exception,
) -> None:
    route = mock.post(URL).mock(side_effect=[failure, appended()])
    assert (await handle.append("x")).next_offset == OFFSET
    assert route.call_count == 2
    assert len(slept) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(502),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.WriteError("broken pipe"),
    ],
)
async def test_plain_append_does_not_retry_ambiguous_failures(
    handle: StreamHandle,
    mock: respx.MockRouter,
    slept: list[float],
    failure: httpx.Response | Exception,
) -> None:
    route = mock.post(URL).mock(side_effect=[failure, appended()])
    with pytest.raises(AppendOutcomeUnknownError) as caught:
        await handle.append("x")
    assert route.call_count == 1
    assert slept == []
    assert caught.value.__cause__ is not None
    assert "append_retry='at-least-once'" in str(caught.value)


async def test_at_least_once_retries_ambiguous_failures(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    route = mock.post(URL).mock(
        side_effect=[httpx.Response(500), httpx.ReadTimeout("x"), appended()]
    )
    async with StreamHandle(URL, content_type="text/plain", append_retry="at-least-once") as h:
        await h.append("x")
    assert route.call_count == 3
    assert len(slept) == 2


async def test_seq_append_retries_and_a_refused_retry_means_probably_applied(
    handle: StreamHandle, mock: respx.MockRouter, slept: list[float]
) -> None:
    mock.post(URL).mock(side_effect=[httpx.Response(500), httpx.Response(409)])
    with pytest.raises(AppendOutcomeUnknownError) as caught:
        await handle.append("x", seq=3)
    assert isinstance(caught.value.__cause__, SequenceConflictError)
    assert len(slept) == 1


async def test_seq_conflict_without_earlier_failure_is_plain(
    handle: StreamHandle, mock: respx.MockRouter
) -> None:
    mock.post(URL).respond(409)
    with pytest.raises(SequenceConflictError):
        await handle.append("x", seq=3)


def test_append_retry_is_validated() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        StreamHandle(URL, append_retry="always")  # type: ignore[arg-type]
    assert caught.value.field == "append_retry"


# -- delete, head, errors --------------------------------------------------------------------


async def test_delete_after_an_ambiguous_failure_accepts_404(
    handle: StreamHandle, mock: respx.MockRouter, slept: list[float]
) -> None:
    route = mock.delete(URL).mock(side_effect=[httpx.ReadTimeout("lost"), httpx.Response(404)])
    await handle.delete()
    assert route.call_count == 2


async def test_delete_404_without_earlier_failure_raises(
    handle: StreamHandle, mock: respx.MockRouter, slept: list[float]
) -> None:
    mock.delete(URL).mock(side_effect=[httpx.Response(503), httpx.Response(404)])
    with pytest.raises(NotFoundError):  # a 503 proves the first attempt did nothing
        await handle.delete()


@pytest.mark.parametrize("status", [405, 501])
async def test_not_supported(handle: StreamHandle, mock: respx.MockRouter, status: int) -> None:
    mock.post(URL).respond(status)
    with pytest.raises(NotSupportedError) as caught:
        await handle.append("x")
    assert caught.value.code == "NOT_SUPPORTED"


async def test_head_parses_metadata(mock: respx.MockRouter) -> None:
    mock.head(URL).respond(
        200,
        headers={
            "content-type": "text/plain",
            "stream-next-offset": OFFSET,
            "stream-ttl": "30",
            "stream-expires-at": "2030-01-01T00:00:00.000Z",
            "stream-closed": "true",
            "etag": '"e"',
        },
    )
    async with StreamHandle(URL) as handle:
        info = await handle.head()
        assert handle.content_type == "text/plain"
    assert info.ttl == 30
    assert info.expires_at == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert info.closed
    assert info.etag == '"e"'


async def test_head_tolerates_malformed_metadata(mock: respx.MockRouter) -> None:
    mock.head(URL).respond(200, headers={"stream-ttl": "soon", "stream-expires-at": "never"})
    async with StreamHandle(URL) as handle:
        info = await handle.head()
    assert info.ttl is None
    assert info.expires_at is None


# -- secrets ---------------------------------------------------------------------------------


async def test_secrets_stay_out_of_reprs_errors_and_retry_logs(
    mock: respx.MockRouter, slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    url = "http://alice:pa55word@streams.test/v1/stream/s?api_key=k3y"
    mock.head(url__startswith="http://streams.test/v1/stream/s").mock(
        side_effect=[httpx.Response(503), httpx.Response(404, headers={"set-cookie": "c00kie"})]
    )
    handle = StreamHandle(url, headers={"Authorization": "Bearer t0ken"}, params={"sig": "s1g"})
    with (
        caplog.at_level(logging.DEBUG, logger="durable_streams"),
        pytest.raises(NotFoundError) as caught,
    ):
        await handle.head()
    await handle.aclose()
    assert caplog.records  # the retry was logged
    rendered = " ".join(
        [repr(handle), str(caught.value), repr(caught.value), str(caught.value.headers)]
        + [record.getMessage() for record in caplog.records]
    )
    for secret in ("pa55word", "k3y", "t0ken", "s1g", "c00kie"):
        assert secret not in rendered


async def test_header_callables_run_again_for_every_retry(
    mock: respx.MockRouter, slept: list[float]
) -> None:
    tokens = iter(["Bearer one", "Bearer two", "Bearer three"])
    route = mock.head(URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(429), httpx.Response(200)]
    )
    async with StreamHandle(URL, headers={"Authorization": lambda: next(tokens)}) as handle:
        await handle.head()
    sent = [call.request.headers["authorization"] for call in route.calls]
    assert sent == ["Bearer one", "Bearer two", "Bearer three"]


async def test_repr_shows_the_redacted_url() -> None:
    async with StreamHandle(URL + "?token=abc") as handle:
        assert repr(handle) == "StreamHandle('http://streams.test/v1/stream/s?token=[REDACTED]')"


async def test_retry_policy_is_used(mock: respx.MockRouter, slept: list[float]) -> None:
    route = mock.head(URL).respond(500)
    async with StreamHandle(URL, retry=RetryPolicy(max_attempts=2)) as handle:
        with pytest.raises(Exception, match="500"):
            await handle.head()
    assert route.call_count == 2
