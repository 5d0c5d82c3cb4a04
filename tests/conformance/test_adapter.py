"""The adapter's side of the protocol, checked directly: framing, error mapping, benchmark.

The YAML cases cover most commands; these pin what they do not (unreadable
lines, ASCII-escaped replies, every benchmark op, a clean shutdown).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.harness import ReferenceServer

from .adapter_client import AdapterClient

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def adapter(conformance_server: ReferenceServer) -> Iterator[AdapterClient]:
    client = AdapterClient()
    client.start(conformance_server.url)
    try:
        yield client
    finally:
        client.stop()


def new_path() -> str:
    return f"/adapter-test-{uuid.uuid4().hex}"


def ok(adapter: AdapterClient, command: dict[str, Any]) -> dict[str, Any]:
    reply = adapter.call(command)
    assert reply["success"] is True, reply
    assert reply["type"] == command["type"]
    return reply


def failed(adapter: AdapterClient, command: dict[str, Any]) -> dict[str, Any]:
    reply = adapter.call(command)
    assert reply["success"] is False, reply
    assert reply["type"] == "error"
    assert reply["commandType"] == command["type"]
    return reply


def test_init_claims_every_feature(adapter: AdapterClient) -> None:
    reply = adapter.init_reply
    assert reply["clientName"] == "aio-durable-streams"
    assert reply["clientVersion"]
    assert reply["features"] == dict.fromkeys(
        [
            *("batching", "sse", "longPoll", "auto", "streaming", "dynamicHeaders"),
            *("retryOptions", "batchItems", "strictZeroValidation"),
        ],
        True,
    )


def test_unreadable_lines_and_unknown_commands(adapter: AdapterClient) -> None:
    adapter.send_raw(b"\n  \nthis is not json\n", replies=1)
    reply = adapter.receive()
    assert (reply["success"], reply["errorCode"]) == (False, "PARSE_ERROR")
    assert failed(adapter, {"type": "teleport"})["errorCode"] == "NOT_SUPPORTED"
    target = {"target": "telepathy"}
    assert failed(adapter, {"type": "validate", "target": target})["errorCode"] == "NOT_SUPPORTED"


def test_errors_carry_code_status_and_path(adapter: AdapterClient) -> None:
    path = new_path()
    missing = failed(adapter, {"type": "head", "path": path})
    assert (missing["errorCode"], missing["status"]) == ("NOT_FOUND", 404)
    assert path in missing["message"]

    ok(adapter, {"type": "create", "path": path, "contentType": "text/plain"})
    conflict = failed(adapter, {"type": "create", "path": path, "contentType": "image/png"})
    assert (conflict["errorCode"], conflict["status"]) == ("CONFLICT", 409)
    bad_offset = failed(adapter, {"type": "read", "path": path, "offset": "not-an-offset"})
    assert (bad_offset["errorCode"], bad_offset["status"]) == ("INVALID_OFFSET", 400)
    ok(adapter, {"type": "append", "path": path, "data": "a", "seq": 5})
    regression = failed(adapter, {"type": "append", "path": path, "data": "b", "seq": 4})
    assert (regression["errorCode"], regression["status"]) == ("SEQUENCE_CONFLICT", 409)
    empty = failed(adapter, {"type": "append", "path": path, "data": ""})
    assert empty["status"] == 400
    ok(adapter, {"type": "close", "path": path})
    closed = failed(adapter, {"type": "append", "path": path, "data": "c"})
    assert (closed["errorCode"], closed["status"]) == ("STREAM_CLOSED", 409)


def test_json_reads_are_compact_arrays_and_replies_are_ascii(adapter: AdapterClient) -> None:
    path = new_path()
    ok(adapter, {"type": "create", "path": path, "contentType": "application/json"})
    ok(adapter, {"type": "append", "path": path, "data": '{"t": "a\u2028b\u0085"}'})
    ok(adapter, {"type": "append", "path": path, "data": "[1, 2]"})
    adapter.send({"type": "read", "path": path})
    reply = adapter.receive()
    assert reply["chunks"] == [
        {"data": '[{"t":"a\u2028b\u0085"},[1,2]]', "offset": reply["offset"]}
    ]
    assert (reply["upToDate"], reply["streamClosed"]) == (True, False)


def test_validate_reports_the_suites_field_names(adapter: AdapterClient) -> None:
    def rejected(target: dict[str, Any]) -> str:
        reply = failed(adapter, {"type": "validate", "target": target})
        assert reply["errorCode"] == "INVALID_ARGUMENT"
        return str(reply["message"])

    assert "maxDelayMs" in rejected(
        {"target": "retry-options", "initialDelayMs": 100, "maxDelayMs": 10}
    )
    assert "producerId" in rejected({"target": "idempotent-producer", "producerId": ""})
    assert "maxBatchItems" in rejected({"target": "idempotent-producer", "maxBatchItems": 0})
    ok(adapter, {"type": "validate", "target": {"target": "idempotent-producer"}})


def bench(adapter: AdapterClient, operation: dict[str, Any]) -> dict[str, Any]:
    reply = ok(adapter, {"type": "benchmark", "iterationId": "it-1", "operation": operation})
    assert reply["iterationId"] == "it-1"
    assert reply["durationNs"].isdigit()
    assert int(reply["durationNs"]) > 0
    return dict(reply["metrics"])


def test_benchmark_ops(adapter: AdapterClient) -> None:
    path = new_path()
    assert bench(adapter, {"op": "create", "path": path}) == {}
    for _ in range(10):
        assert bench(adapter, {"op": "append", "path": path, "size": 1024}) == {
            "bytesTransferred": 1024
        }
    assert bench(adapter, {"op": "read", "path": path}) == {"bytesTransferred": 10 * 1024}
    for live, content_type in (("long-poll", None), ("sse", "application/json")):
        operation = {"op": "roundtrip", "path": new_path(), "size": 100, "live": live}
        if content_type:
            operation["contentType"] = content_type
        assert bench(adapter, operation)["bytesTransferred"] >= 200

    json_path = new_path()
    ok(adapter, {"type": "create", "path": json_path, "contentType": "application/json"})
    operation = {"op": "throughput_append", "path": json_path, "count": 300, "size": 64}
    metrics = bench(adapter, {**operation, "concurrency": 4})
    assert metrics == {"bytesTransferred": 300 * 64, "messagesProcessed": 300}
    metrics = bench(adapter, {"op": "throughput_read", "path": json_path, "expectedCount": 10**5})
    assert metrics["messagesProcessed"] == 300
    assert metrics["bytesTransferred"] > 300 * 60

    unknown = failed(adapter, {"type": "benchmark", "iterationId": "x", "operation": {"op": "?"}})
    assert unknown["errorCode"] == "NOT_SUPPORTED"


def test_shutdown_exits_cleanly(conformance_server: ReferenceServer) -> None:
    client = AdapterClient()
    client.start(conformance_server.url)
    ok(client, {"type": "init", "serverUrl": conformance_server.url})  # a repeated init resets
    assert client.stop() == 0


def test_dynamic_values_are_evaluated_once_per_command(adapter: AdapterClient) -> None:
    path = new_path()
    ok(adapter, {"type": "create", "path": path, "contentType": "text/plain"})
    ok(adapter, {"type": "set-dynamic-header", "name": "X-Count", "valueType": "counter"})
    ok(adapter, {"type": "set-dynamic-param", "name": "n", "valueType": "counter"})
    try:
        # A live read that runs past several 500 ms long-polls still counts as one evaluation.
        live = {"type": "read", "path": path, "live": "long-poll", "timeoutMs": 1300}
        reply = ok(adapter, live)
        assert (reply["headersSent"], reply["paramsSent"]) == ({"X-Count": "1"}, {"n": "1"})
        assert reply["upToDate"] is True
        append = {"type": "append", "path": path, "data": "x", "headers": {"x-count": "mine"}}
        reply = ok(adapter, append)  # the command's own header wins
        assert (reply["headersSent"], reply["paramsSent"]) == ({"X-Count": "mine"}, {"n": "2"})
    finally:
        ok(adapter, {"type": "clear-dynamic"})
    reply = ok(adapter, {"type": "append", "path": path, "data": "y"})
    assert "headersSent" not in reply
    assert "paramsSent" not in reply


def test_a_session_on_trio(conformance_server: ReferenceServer) -> None:
    client = AdapterClient(env={"DURABLE_STREAMS_ADAPTER_BACKEND": "trio"})
    client.start(conformance_server.url)
    try:
        path = new_path()
        ok(client, {"type": "create", "path": path, "contentType": "application/json"})
        ok(client, {"type": "append", "path": path, "data": '{"n":1}'})
        ack = ok(
            client, {"type": "idempotent-append", "path": path, "producerId": "p", "data": "2"}
        )
        assert ack["duplicate"] is False
        for live in ("long-poll", "sse"):
            read = {"type": "read", "path": path, "live": live, "waitForUpToDate": True}
            reply = ok(client, read)
            items = [item for chunk in reply["chunks"] for item in json.loads(chunk["data"])]
            assert items == [{"n": 1}, 2]
            assert reply["upToDate"] is True
        ok(client, {"type": "idempotent-close", "path": path, "producerId": "p"})
        head = ok(client, {"type": "head", "path": path})
        assert head["streamClosed"] is True
    finally:
        assert client.stop() == 0


def test_cached_producers_stop_in_any_order(conformance_server: ReferenceServer) -> None:
    client = AdapterClient()
    client.start(conformance_server.url)
    try:
        first, second, third = new_path(), new_path(), new_path()
        for path in (first, second, third):
            ok(client, {"type": "create", "path": path, "contentType": "text/plain"})
            ok(client, {"type": "idempotent-append", "path": path, "producerId": "p", "data": "a"})
        # Not in the reverse order of creation: each producer owns its own scope.
        ok(client, {"type": "idempotent-detach", "path": first, "producerId": "p"})
        ok(client, {"type": "idempotent-append", "path": second, "producerId": "p", "data": "b"})
        ok(client, {"type": "idempotent-close", "path": second, "producerId": "p", "data": "c"})
        reply = ok(client, {"type": "read", "path": second})
        assert (reply["chunks"][0]["data"], reply["streamClosed"]) == ("abc", True)
        # A new producer for the detached one restarts at seq 0 of epoch 0: the server has
        # that seq already. The adapter's producers replay (the suite re-sends batches under
        # the epochs it names), so the SDK reports the duplicate.
        again = {"type": "idempotent-append", "path": first, "producerId": "p", "data": "x"}
        assert ok(client, again)["duplicate"] is True
    finally:
        assert client.stop() == 0  # the third producer is still cached: shutdown stops it
