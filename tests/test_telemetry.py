"""OpenTelemetry spans and metrics (``_telemetry.py``), against the in-memory server.

Each test gets its own tracer and meter providers with in-memory exporters
(``Telemetry(tracer_provider=..., meter_provider=...)`` in place of the global
one), so nothing leaks into other tests. What happens without ``opentelemetry``
is checked in a subprocess where it cannot be imported.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durable_streams import (
    Consumer,
    IdempotentProducer,
    MemoryCheckpoints,
    NetworkError,
    RetryPolicy,
    ServerError,
    StreamHandle,
    _telemetry,
)
from durable_streams._telemetry import Telemetry
from durable_streams.testing import InMemoryServer, Reply, Request

pytestmark = pytest.mark.anyio

FAST_RETRY = RetryPolicy(initial_delay=0.001, max_delay=0.002)
SECRET_TOKEN = "tok-s3cr3t-value"
SECRET_AUTH = "Bearer hunter2-credential"


@dataclass
class Captured:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer: trace.Tracer

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.spans.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """The data points of metric ``name``: (attributes, point) pairs."""
        data = self.metrics.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found

    def total(self, name: str) -> float:
        return float(sum(point.value for _, point in self.points(name)))


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    monkeypatch.setattr(_telemetry, "OTEL", telemetry)
    monkeypatch.setattr(_telemetry, "_loaded", True)
    yield Captured(spans, metrics, tracer_provider.get_tracer("test"))
    meter_provider.shutdown()
    tracer_provider.shutdown()


class RecordingServer(InMemoryServer):
    """Keeps every request it answers (headers as the server received them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received: list[Request] = []

    async def handle(self, request: Request) -> Reply:
        self.received.append(request)
        return await super().handle(request)


def traceparent_of(span: ReadableSpan) -> str:
    """The version, trace id and span id a ``traceparent`` header for ``span`` starts with."""
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-"


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    context = span.get_span_context()
    assert context is not None
    return context.span_id


# -- HTTP request spans -----------------------------------------------------------------------


async def test_each_request_is_a_client_span_named_after_its_method(otel: Captured) -> None:
    server = RecordingServer()
    url = server.stream_url("s")
    async with StreamHandle(url, client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append({"n": 1})
    put, post = otel.finished()
    assert (put.name, post.name) == ("PUT", "POST")
    assert put.kind is trace.SpanKind.CLIENT
    attributes = dict(post.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.full"] == url
    assert attributes["server.address"] == "durable-streams.test"
    assert attributes["server.port"] == 80
    assert attributes["http.response.status_code"] == 204
    assert attributes["http.request.body.size"] == len(b'[{"n":1}]')
    assert attributes["http.response.body.size"] == 0
    assert "http.request.resend_count" not in attributes
    assert post.status.status_code is trace.StatusCode.UNSET
    durations = otel.points("http.client.request.duration")
    assert sorted(a["http.request.method"] for a, _ in durations) == ["POST", "PUT"]
    assert all(point.count == 1 for _, point in durations)


async def test_traceparent_carries_the_request_span_under_the_current_one(
    otel: Captured,
) -> None:
    server = RecordingServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        with otel.tracer.start_as_current_span("job") as job:
            await handle.create()
    (request,) = server.received
    assert len(otel.finished("job")) == 1
    (put,) = otel.finished("PUT")
    assert parent_id(put) == job.get_span_context().span_id
    assert request.headers["traceparent"].startswith(traceparent_of(put))
    assert put.context is not None
    assert put.context.trace_id == job.get_span_context().trace_id


async def test_without_a_current_span_the_api_alone_sends_no_traceparent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The API's own no-op providers: what an application gets that installed
    # opentelemetry-api but configured no SDK.
    telemetry = Telemetry(
        tracer_provider=trace.NoOpTracerProvider(),
        meter_provider=NoOpMeterProvider(),
    )
    monkeypatch.setattr(_telemetry, "OTEL", telemetry)
    monkeypatch.setattr(_telemetry, "_loaded", True)
    server = RecordingServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create()
        await handle.append(b"x")
    assert [r.method for r in server.received] == ["PUT", "POST"]
    assert not any("traceparent" in r.headers for r in server.received)


async def test_a_failed_attempt_and_its_resend_are_two_spans(otel: Captured) -> None:
    server = RecordingServer()
    async with StreamHandle(
        server.stream_url("s"), client=server.client(), retry=FAST_RETRY
    ) as handle:
        await handle.create(content_type="text/plain")
        server.inject(handle.url, status=503, count=1, method="POST")
        await handle.append(b"x")  # a 503 proves nothing was stored: retried
        server.inject(handle.url, status=500, count=2, method="HEAD")
        await handle.head()  # call_with_retry: the resend count travels in a context var
    first, second = otel.finished("POST")
    assert dict(first.attributes or {})["http.response.status_code"] == 503
    assert dict(first.attributes or {})["error.type"] == "503"
    assert first.status.status_code is trace.StatusCode.ERROR
    assert "http.request.resend_count" not in dict(first.attributes or {})
    assert dict(second.attributes or {})["http.request.resend_count"] == 1
    assert second.status.status_code is trace.StatusCode.UNSET
    heads = otel.finished("HEAD")
    assert [dict(s.attributes or {}).get("http.request.resend_count") for s in heads] == [
        None,
        1,
        2,
    ]
    assert _telemetry.RESEND_COUNT.get() == 0  # reset after the retries


async def test_a_network_failure_ends_the_span_with_its_error_type(otel: Captured) -> None:
    server = RecordingServer()
    async with StreamHandle(
        server.stream_url("s"), client=server.client(), retry=RetryPolicy.disabled()
    ) as handle:
        server.inject(handle.url, drop=True, count=1)
        with pytest.raises(NetworkError):
            await handle.create()
    (put,) = otel.finished("PUT")
    attributes = dict(put.attributes or {})
    assert attributes["error.type"] == "NetworkError"
    assert "http.response.status_code" not in attributes
    assert put.status.status_code is trace.StatusCode.ERROR
    assert put.status.description == "NetworkError"  # never the message


async def test_no_credential_appears_in_any_span_or_metric(otel: Captured) -> None:
    server = RecordingServer()
    url = f"{server.stream_url('s')}?token={SECRET_TOKEN}"
    async with StreamHandle(
        url, client=server.client(), headers={"Authorization": SECRET_AUTH}, retry=FAST_RETRY
    ) as handle:
        await handle.create(content_type="application/json")
        server.inject(handle.url, status=503, count=1, method="POST")
        await handle.append({"secret-payload": 1})
        async with IdempotentProducer(handle, "p") as producer:
            await producer.send({"secret-payload": 2})
        store = MemoryCheckpoints()
        async with Consumer(handle, name="c", checkpoints=store) as consumer:
            async for _ in consumer.iter_json():
                pass
        await (await handle.stream(offset="-1", live=False)).json()
    assert all(r.headers["authorization"] == SECRET_AUTH for r in server.received)
    spans = otel.finished()
    assert {s.name for s in spans} >= {
        "PUT",
        "POST",
        "GET",
        "durable_streams.producer.batch",
        "durable_streams.consumer.commit",
    }
    dumped = "".join(span.to_json() for span in spans)
    data = otel.metrics.get_metrics_data()
    assert data is not None
    dumped += data.to_json()
    for secret in (SECRET_TOKEN, "hunter2", "secret-payload"):
        assert secret not in dumped
    urls = {dict(s.attributes or {}).get("url.full") for s in spans} - {None}
    assert urls
    assert all("token=[REDACTED]" in str(u) for u in urls)


# -- producer batches ---------------------------------------------------------------------------


async def test_a_producer_batch_span_is_the_parent_of_its_attempts(otel: Captured) -> None:
    server = RecordingServer()
    async with StreamHandle(
        server.stream_url("s"), client=server.client(), retry=FAST_RETRY
    ) as handle:
        await handle.create(content_type="application/json")
        async with IdempotentProducer(handle, "p1", epoch=3) as producer:
            server.inject(handle.url, status=503, count=1, method="POST")
            await producer.send({"n": 1})
            producer.append({"n": 2})
            producer.append({"n": 3})
            await producer.flush()
    batches = otel.finished("durable_streams.producer.batch")
    assert len(batches) == 2
    first = dict(batches[0].attributes or {})
    assert first["durable_streams.producer.id"] == "p1"
    assert (first["durable_streams.producer.epoch"], first["durable_streams.producer.seq"]) == (
        3,
        0,
    )
    assert first["messaging.batch.message_count"] == 1
    assert first["durable_streams.batch.bytes"] == len(b'[{"n":1}]')  # the request body
    assert first["durable_streams.batch.outcome"] == "stored"
    assert dict(batches[1].attributes or {})["messaging.batch.message_count"] == 2
    posts = otel.finished("POST")
    children = {span_id(b): [s for s in posts if parent_id(s) == span_id(b)] for b in batches}
    failed, resent = children[span_id(batches[0])]
    assert dict(failed.attributes or {})["http.response.status_code"] == 503
    assert dict(resent.attributes or {})["http.request.resend_count"] == 1
    assert len(children[span_id(batches[1])]) == 1
    # Every POST span's context went out as the request's traceparent.
    sent = [r.headers["traceparent"][:-2] for r in server.received if r.method == "POST"]
    assert sent == [traceparent_of(s) for s in posts]
    assert otel.total("durable_streams.producer.acked_messages") == 3
    assert otel.total("durable_streams.producer.acked_bytes") == len(b'[{"n":1}][{"n":2},{"n":3}]')
    assert otel.total("durable_streams.producer.retries") == 1
    assert otel.total("durable_streams.producer.duplicate_messages") == 0


async def test_duplicates_are_counted(otel: Captured) -> None:
    server = RecordingServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        for _ in range(2):  # the second run sends the same tuple again: 204
            async with IdempotentProducer(handle, "p", epoch=0, identity="replay") as producer:
                await producer.send({"n": 1})
    outcomes = [
        dict(s.attributes or {})["durable_streams.batch.outcome"]
        for s in otel.finished("durable_streams.producer.batch")
    ]
    assert outcomes == ["stored", "duplicate"]
    assert otel.total("durable_streams.producer.duplicate_messages") == 1
    assert otel.total("durable_streams.producer.acked_messages") == 2


async def test_in_flight_and_buffered_bytes_are_observed_while_a_producer_runs(
    otel: Captured,
) -> None:
    server = RecordingServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/octet-stream")
        async with IdempotentProducer(handle, "p") as producer:
            for _ in range(4):
                producer.append(b"0123456789")  # never waits: nothing sent yet
            assert otel.total("durable_streams.producer.buffered_bytes") == 40
            await producer.flush()
            assert otel.total("durable_streams.producer.buffered_bytes") == 0
            assert otel.total("durable_streams.producer.in_flight") == 0


# -- consumers and readers ---------------------------------------------------------------------


async def test_a_commit_span_links_to_the_read_that_delivered_the_items(otel: Captured) -> None:
    server = RecordingServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append_many([{"n": 1}, {"n": 2}, {"n": 3}])
        store = MemoryCheckpoints()
        consumer = Consumer(handle, name="billing", checkpoints=store, commit_every=2)
        async with consumer:
            seen = [item async for item in consumer.iter_json()]
            ((attributes, point),) = otel.points("durable_streams.consumer.caught_up")
            assert (attributes, point.value) == ({"durable_streams.consumer.name": "billing"}, 1)
    assert otel.points("durable_streams.consumer.caught_up") == []  # closed: not reported
    assert len(seen) == 3
    commits = otel.finished("durable_streams.consumer.commit")
    assert [dict(c.attributes or {})["durable_streams.consumer.items"] for c in commits] == [2, 1]
    (read,) = otel.finished("GET")
    # A streamed read's span ends at its headers: the size is the declared one.
    assert dict(read.attributes or {})["http.response.body.size"] == len(
        b'[{"n":1},{"n":2},{"n":3}]'
    )
    for commit in commits:
        assert [link.context.span_id for link in commit.links] == [span_id(read)]
        attributes = dict(commit.attributes or {})
        assert attributes["durable_streams.consumer.name"] == "billing"
    last = dict(commits[-1].attributes or {})["durable_streams.consumer.offset"]
    assert last == (await store.load(consumer.key)).offset  # type: ignore[union-attr]
    ((attributes, point),) = otel.points("durable_streams.consumer.commit.duration")
    assert (attributes, point.count) == ({"durable_streams.consumer.name": "billing"}, 2)
    assert otel.total("durable_streams.consumer.items") == 3


async def test_items_are_counted_when_the_application_saves(otel: Captured) -> None:
    server = RecordingServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append_many([{"n": 1}, {"n": 2}])
        consumer = Consumer(handle, name="c", checkpoints=MemoryCheckpoints(), commit_every=None)
        async with consumer:
            async for _ in consumer.iter_json():
                pass
    assert otel.finished("durable_streams.consumer.commit") == []
    assert otel.total("durable_streams.consumer.items") == 2


async def test_a_live_read_that_fails_counts_a_reconnect(otel: Captured) -> None:
    server = RecordingServer(long_poll_timeout=2.0)
    async with StreamHandle(
        server.stream_url("s"), client=server.client(), retry=FAST_RETRY
    ) as handle:
        await handle.create(content_type="application/json")
        await handle.append({"n": 1})
        seen = []
        async with await handle.stream(live="long-poll") as response:
            async for item in response.iter_json():
                seen.append(item)
                if len(seen) == 1:
                    server.inject(handle.url, status=503, count=1, method="GET")
                    await handle.append({"n": 2})
                else:
                    break
    assert seen == [{"n": 1}, {"n": 2}]
    ((attributes, point),) = otel.points("durable_streams.reader.reconnects")
    assert (attributes, point.value) == ({"durable_streams.read.mode": "long-poll"}, 1)
    gets = otel.finished("GET")
    assert [dict(s.attributes or {}).get("http.response.status_code") for s in gets] == [
        200,
        503,
        200,
    ]


# -- logging ------------------------------------------------------------------------------------


async def test_giving_up_on_retries_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    server = RecordingServer()
    policy = RetryPolicy(initial_delay=0.001, max_attempts=2)
    async with StreamHandle(server.stream_url("s"), client=server.client(), retry=policy) as h:
        server.inject(h.url, status=503, count=5)
        with caplog.at_level(logging.INFO, logger="durable_streams"), pytest.raises(ServerError):
            await h.head()
    (record,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert record.getMessage().startswith(f"giving up on head {h.url} after 2 attempts: ")


async def test_falling_back_from_sse_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    class NoSse(RecordingServer):
        async def handle(self, request: Request) -> Reply:
            if request.param("live") == "sse":
                self.received.append(request)
                return Reply(400, body=b"no SSE here")
            return await super().handle(request)

    server = NoSse(long_poll_timeout=2.0)
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append({"n": 1})
        with caplog.at_level(logging.INFO, logger="durable_streams"):
            async with await handle.stream(live="auto") as response:
                items = response.iter_json()
                with anyio.fail_after(5):
                    assert await items.__anext__() == {"n": 1}  # catch-up
                    await handle.append({"n": 2})
                    assert await items.__anext__() == {"n": 2}  # SSE refused: long-poll
                await items.aclose()  # type: ignore[attr-defined]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("falling back from SSE to long-poll" in line for line in lines)
    assert [r.param("live") for r in server.received if r.method == "GET"] == [
        None,
        "sse",
        "long-poll",
    ]


async def test_a_consumer_logs_where_it_starts_and_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RecordingServer()
    store = MemoryCheckpoints()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append({"n": 1})
        with caplog.at_level(logging.INFO, logger="durable_streams"):
            for _ in range(2):
                async with Consumer(handle, name="c", checkpoints=store, commit_every=1) as c:
                    async for _ in c.iter_json():
                        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "durable_streams"]
    where = "http://durable-streams.test/v1/stream/s"
    assert lines[0] == f"consumer 'c': starting {where} at dsp1:items:0:-1 (no saved position)"
    assert lines[1].startswith(f"consumer 'c': resuming {where} at ")
    assert lines[1].endswith("(saved)")


# -- without opentelemetry ----------------------------------------------------------------------

_WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # `import opentelemetry` now raises ImportError
import anyio, json
from durable_streams import Consumer, IdempotentProducer, MemoryCheckpoints, StreamHandle
from durable_streams import _telemetry
from durable_streams.testing import InMemoryServer, Reply

class Recording(InMemoryServer):
    headers = []
    async def handle(self, request):
        self.headers.append(dict(request.headers))
        return await super().handle(request)

async def main():
    server = Recording()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append({"n": 1})
        async with IdempotentProducer(handle, "p") as producer:
            await producer.send({"n": 2})
        async with Consumer(handle, name="c", checkpoints=MemoryCheckpoints()) as consumer:
            items = [item async for item in consumer.iter_json()]
    print(json.dumps({
        "items": items,
        "otel": _telemetry.OTEL is not None,
        "loaded": "opentelemetry.trace" in sys.modules,
        "traceparent": any("traceparent" in h for h in Recording.headers),
    }))

anyio.run(main)
"""


def test_without_opentelemetry_everything_works_and_nothing_is_traced() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {
        "items": [{"n": 1}, {"n": 2}],
        "otel": False,
        "loaded": False,
        "traceparent": False,
    }


_HANDLERS = """
import logging, sys
def handlers():
    return {
        name: [type(h).__name__ for h in logging.getLogger(name).handlers]
        for name in ("", "durable_streams", "durable_streams.state", "httpx", "httpcore")
    }
before = handlers()
import anyio
import durable_streams
from durable_streams import Consumer, IdempotentProducer, MemoryCheckpoints, StreamHandle
from durable_streams.testing import InMemoryServer

async def main():
    server = InMemoryServer()
    async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
        await handle.create(content_type="application/json")
        await handle.append({"n": 1})
        async with IdempotentProducer(handle, "p") as producer:
            await producer.send({"n": 2})
        async with Consumer(handle, name="c", checkpoints=MemoryCheckpoints()) as consumer:
            [item async for item in consumer.iter_json()]

anyio.run(main)
after = handlers()
assert before == after, (before, after)
assert after["durable_streams"] == [] and after[""] == [], after
assert not logging.getLogger().handlers
print("ok")
"""


def test_the_sdk_adds_no_log_handlers() -> None:
    # Application logging is the application's: no basicConfig, no handler (not even a
    # NullHandler, so Python's last-resort handler still shows warnings of an
    # application that configured nothing).
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_HANDLERS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_opentelemetry_loads_at_the_first_transport_and_uses_the_global_providers() -> None:
    script = """
    import sys
    import anyio
    from durable_streams import StreamHandle, _telemetry
    from durable_streams.testing import InMemoryServer
    # Importing the SDK does not import OpenTelemetry (~30 ms): the first Transport does.
    assert "opentelemetry" not in sys.modules and _telemetry.OTEL is None

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def main():
        server = InMemoryServer()
        async with StreamHandle(server.stream_url("s"), client=server.client()) as handle:
            trace.set_tracer_provider(provider)  # after the first Transport: still used
            await handle.create()

    anyio.run(main)
    print([span.name for span in exporter.get_finished_spans()])
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['PUT']"


# -- telemetry never breaks the SDK -----------------------------------------------------------


class Exploding(SimpleSpanProcessor):
    """A span processor that fails on every span it sees (a buggy exporter, a bad hook)."""

    def __init__(self, where: str) -> None:
        super().__init__(InMemorySpanExporter())
        self.where = where

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("processor on_start boom")

    def on_end(self, span: ReadableSpan) -> None:
        if self.where == "end":
            raise RuntimeError("processor on_end boom")


class ExplodingPropagator:
    """A text-map propagator whose inject fails."""

    fields: set[str] = {"traceparent"}

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        raise ValueError("propagator boom")

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        return context


@pytest.mark.parametrize("where", ["start", "end", "inject"])
async def test_failing_telemetry_never_fails_or_hides_sdk_calls(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer_provider = TracerProvider()
    if where == "inject":
        from opentelemetry import propagate

        monkeypatch.setattr(propagate, "get_global_textmap", ExplodingPropagator)
        tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    else:
        tracer_provider.add_span_processor(Exploding(where))
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())
    if where == "inject":
        monkeypatch.setattr(telemetry, "_inject", ExplodingPropagator().inject)
    monkeypatch.setattr(_telemetry, "OTEL", telemetry)
    monkeypatch.setattr(_telemetry, "_loaded", True)
    server = InMemoryServer(long_poll_timeout=5)
    url = server.stream_url("s")
    tracer = TracerProvider().get_tracer("app")  # the application's own, working tracer
    with tracer.start_as_current_span("app"):  # a current span: traceparent is injected
        async with StreamHandle(url, client=server.client()) as handle:
            await handle.create(content_type="application/json")
            await handle.append({"n": 0})
            async with IdempotentProducer(handle, "p") as producer:
                producer.append({"n": 1})
                await producer.flush()
            store = MemoryCheckpoints()
            async with Consumer(handle, name="c", checkpoints=store) as consumer:
                assert [item["n"] async for item in consumer.iter_json()] == [0, 1]
            assert store.saves >= 1
            # A cancelled live read is still a cancellation, not a telemetry error.
            with anyio.move_on_after(0.2) as scope:
                async with handle.stream(offset="now", live="long-poll") as res:
                    async for _ in res:
                        pass
            assert scope.cancelled_caught
            assert (await handle.head()).content_type == "application/json"


async def test_a_traceparent_set_by_the_caller_is_sent_as_given(otel: Captured) -> None:
    server = RecordingServer()
    url = server.stream_url("s")
    mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with otel.tracer.start_as_current_span("app"):
        async with StreamHandle(url, client=server.client()) as handle:
            await handle.create(content_type="application/json")
            await handle.append({"n": 1}, headers={"traceparent": mine})
    appends = [r for r in server.received if r.method == "POST"]
    assert [r.headers.get("traceparent") for r in appends] == [mine]
