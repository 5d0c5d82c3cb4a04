"""OpenTelemetry against the reference server: a producer batch span is the parent of its
HTTP request spans, each request goes on the wire with its span's ``traceparent``, and a
consumer's commit span links to the read that delivered the items."""

from __future__ import annotations

import httpx
import pytest

from durable_streams import (
    Consumer,
    IdempotentProducer,
    MemoryCheckpoints,
    RetryPolicy,
    StreamHandle,
)
from tests.conftest import ServerTarget
from tests.test_telemetry import Captured, parent_id, span_id, traceparent_of
from tests.test_telemetry import otel as otel  # the fixture: its own in-memory providers

pytestmark = pytest.mark.anyio


class WireRecorder(httpx.AsyncBaseTransport):
    """The innermost httpx transport: keeps the headers of each request it writes out."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Headers] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(httpx.Headers(request.headers))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_batch_spans_parent_their_requests_whose_traceparent_goes_out(
    otel: Captured, stream_url: str, faults: ServerTarget
) -> None:
    wire = WireRecorder()
    retry = RetryPolicy(initial_delay=0.001, max_delay=0.002)
    async with (
        httpx.AsyncClient(transport=wire) as client,
        StreamHandle(stream_url, client=client, retry=retry) as handle,
    ):
        await handle.create(content_type="application/json")
        with otel.tracer.start_as_current_span("job") as job:
            async with IdempotentProducer(handle, "svc-1") as producer:
                faults.inject_fault(httpx.URL(stream_url).path, status=503, count=1)
                await producer.send({"n": 0})
                producer.append({"n": 1})
                producer.append({"n": 2})
                await producer.flush()
            store = MemoryCheckpoints()
            async with Consumer(handle, name="c", checkpoints=store) as consumer:
                seen = [item["n"] async for item in consumer.iter_json()]
    assert seen == [0, 1, 2]

    batches = otel.finished("durable_streams.producer.batch")
    assert [dict(b.attributes or {})["messaging.batch.message_count"] for b in batches] == [1, 2]
    assert all(parent_id(b) == job.get_span_context().span_id for b in batches)
    posts = otel.finished("POST")
    assert [dict(s.attributes or {})["http.response.status_code"] for s in posts] == [503, 200, 200]
    assert [parent_id(s) for s in posts] == [span_id(batches[0])] * 2 + [span_id(batches[1])]
    assert dict(posts[1].attributes or {})["http.request.resend_count"] == 1
    # On the wire: each request carried its own span's context.
    on_wire = [h["traceparent"] for h in wire.sent if "producer-id" in h]
    assert [header[:-2] for header in on_wire] == [traceparent_of(s) for s in posts]
    # The consumer's commit links to its read request.
    (read,) = otel.finished("GET")
    (commit,) = otel.finished("durable_streams.consumer.commit")
    assert [link.context.span_id for link in commit.links] == [span_id(read)]
    assert otel.total("durable_streams.producer.acked_messages") == 3
    assert otel.total("durable_streams.producer.retries") == 1
