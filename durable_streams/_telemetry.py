"""OpenTelemetry: spans and metrics of HTTP requests, producer batches and consumer commits.

Only the OpenTelemetry *API* is used (``pip install 'aio-durable-streams[otel]'``);
the application chooses the SDK, exporters and sampling. The API is imported
once, when the first :class:`~._transport.Transport` is made (:func:`load`), not
when ``durable_streams`` is imported (it takes ~30 ms). Without it, :data:`OTEL`
stays None and every hook is skipped by one ``is None`` check at its call site:
nothing is allocated per request. With the API but no SDK configured, the API's
own no-op objects answer (a few microseconds per request; attributes are only
computed for recording spans).

What is recorded (names in ``docs/guides/observability.md``):

- one CLIENT span per HTTP request attempt, named after the method (semantic
  conventions for HTTP clients): ``url.full`` redacted by :func:`~._redact.redact_url`,
  ``http.request.resend_count`` on retries, statuses, ``error.type``, body sizes;
  its context goes out as ``traceparent`` (the global propagator);
- a span per producer batch delivery, parent of its HTTP attempts;
- a span per consumer commit, linked to the read request that delivered the data;
- counters, histograms and observable gauges under ``durable_streams.`` and
  ``http.client.request.duration``.

Never recorded: header values, payloads, error messages (they may quote a
server's body), URL query values other than the protocol's own.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import httpx

from ._redact import redact_url

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, SpanContext, TracerProvider

__all__ = [
    "INSTRUMENTATION_NAME",
    "LAST_READ_SPAN",
    "OTEL",
    "RequestSpan",
    "RESEND_COUNT",
    "Telemetry",
    "load",
]

INSTRUMENTATION_NAME = "durable_streams"

#: Set by a retry loop around a resend that goes through ``Transport.request`` (only
#: while resending): the ``http.request.resend_count`` of the next request.
RESEND_COUNT: ContextVar[int] = ContextVar("durable_streams_resend_count", default=0)

#: The span context of the last read request sent from this context (only while OTel is
#: loaded): a consumer's commit span links to it, the request that delivered the data.
LAST_READ_SPAN: ContextVar[SpanContext | None] = ContextVar(
    "durable_streams_last_read_span", default=None
)


class WatchedProducer(Protocol):
    """What the producer gauges read (``IdempotentProducer`` has these)."""

    @property
    def in_flight(self) -> int: ...
    @property
    def buffered_bytes(self) -> int: ...


class WatchedConsumer(Protocol):
    """What the consumer gauge reads (``Consumer`` has these)."""

    @property
    def name(self) -> str: ...
    @property
    def caught_up(self) -> bool: ...


P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("durable_streams")

#: The largest value an OTLP int attribute holds (a server's Content-Length may be larger).
_MAX_INT64 = 2**63 - 1


def _fail_safe(hook: Callable[P, R]) -> Callable[P, R | None]:
    """Telemetry never breaks the SDK: an error raised by the OpenTelemetry SDK, a span
    processor or a propagator inside ``hook`` is logged at DEBUG and the hook does nothing
    (returns None), so a request that worked is never reported failed and a cancellation
    is never replaced."""

    @functools.wraps(hook)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return hook(*args, **kwargs)
        except Exception:
            logger.debug("telemetry: %s failed and was skipped", hook.__name__, exc_info=True)
            return None

    return guarded


class Telemetry:
    """The loaded OpenTelemetry API: the tracer, the instruments and the hooks.

    Exists only when ``opentelemetry`` imports; callers check :data:`OTEL` first::

        otel = _telemetry.OTEL
        span = otel.start_request(request, 0) if otel is not None else None
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        """The global providers by default (tests pass their own, with in-memory exporters)."""
        from opentelemetry import context, metrics, propagate, trace

        from . import __version__

        self._trace = trace
        self._context = context
        self._inject = propagate.inject
        self._client = trace.SpanKind.CLIENT
        self._internal = trace.SpanKind.INTERNAL
        self._error = trace.StatusCode.ERROR
        self._link = trace.Link
        self.tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self._observation = metrics.Observation
        self.http_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (to complete response headers, "
            "or the whole body when it is read at once).",
        )
        self.acked_messages = meter.create_counter(
            "durable_streams.producer.acked_messages",
            unit="{message}",
            description="Messages the server acknowledged to producers (duplicates included).",
        )
        self.acked_bytes = meter.create_counter(
            "durable_streams.producer.acked_bytes",
            unit="By",
            description="Bytes of acknowledged producer messages (duplicates included).",
        )
        self.duplicate_messages = meter.create_counter(
            "durable_streams.producer.duplicate_messages",
            unit="{message}",
            description="Acknowledged messages the server already had (204: not stored again).",
        )
        self.failed_messages = meter.create_counter(
            "durable_streams.producer.failed_messages",
            unit="{message}",
            description="Producer messages that failed for good.",
        )
        self.producer_retries = meter.create_counter(
            "durable_streams.producer.retries",
            unit="{retry}",
            description="Batch requests sent again after a retryable failure.",
        )
        self.epoch_changes = meter.create_counter(
            "durable_streams.producer.epoch_changes",
            unit="{epoch}",
            description="Producer epoch changes (claims, recoveries, restarts).",
        )
        self.consumer_items = meter.create_counter(
            "durable_streams.consumer.items",
            unit="{item}",
            description="Items consumers handled (counted when their position is saved, "
            "or when the iteration ends).",
        )
        self.commit_duration = meter.create_histogram(
            "durable_streams.consumer.commit.duration",
            unit="s",
            description="Time to save a consumer's position in its checkpoint store.",
        )
        self.reconnects = meter.create_counter(
            "durable_streams.reader.reconnects",
            unit="{reconnect}",
            description="Live reads opened again after a failure or an ended SSE connection.",
        )
        self._producers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._consumers: weakref.WeakSet[Any] = weakref.WeakSet()
        meter.create_observable_up_down_counter(
            "durable_streams.producer.in_flight",
            callbacks=[self._observe_in_flight],
            unit="{batch}",
            description="Producer batches sent and not yet acknowledged or failed.",
        )
        meter.create_observable_up_down_counter(
            "durable_streams.producer.buffered_bytes",
            callbacks=[self._observe_buffered],
            unit="By",
            description="Bytes appended to producers and not yet settled.",
        )
        meter.create_observable_gauge(
            "durable_streams.consumer.caught_up",
            callbacks=[self._observe_caught_up],
            unit="1",
            description="1 when a consumer's last handled item reached the stream's tail.",
        )

    # -- HTTP requests -----------------------------------------------------------------------

    @_fail_safe
    def start_request(self, request: httpx.Request, resend_count: int) -> RequestSpan:
        """Start the CLIENT span of one attempt and put its context on the request."""
        span = self.tracer.start_span(request.method, kind=self._client)
        try:
            if span.is_recording():
                url = request.url
                span.set_attributes(
                    {
                        "http.request.method": request.method,
                        "url.full": redact_url(url),
                        "server.address": url.host,
                        "server.port": url.port or (443 if url.scheme == "https" else 80),
                    }
                )
                if resend_count:
                    span.set_attribute("http.request.resend_count", resend_count)
                size = request.headers.get("content-length")
                if size is not None and size.isdigit() and int(size) <= _MAX_INT64:
                    span.set_attribute("http.request.body.size", int(size))
            span_context = span.get_span_context()
            if span_context.is_valid:
                # A traceparent the caller set on the request is theirs: kept as sent.
                if "traceparent" not in request.headers:
                    self._inject(request.headers, context=self._trace.set_span_in_context(span))
                if request.method == "GET":
                    LAST_READ_SPAN.set(span_context)
        except Exception:
            span.end()
            raise
        return RequestSpan(self, span, request)

    @_fail_safe
    def end_request(
        self,
        attempt: RequestSpan,
        response: httpx.Response | None,
        error: BaseException | None,
        body_size: int | None,
    ) -> None:
        """End the span of one attempt and record its duration."""
        span, url = attempt.span, attempt.request.url
        attributes: dict[str, str | int] = {
            "http.request.method": attempt.request.method,
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        error_type: str | None = None
        if response is not None:
            status = response.status_code
            attributes["http.response.status_code"] = status
            attributes["network.protocol.version"] = response.http_version.removeprefix("HTTP/")
            if status >= 400:
                error_type = str(status)
        if error is not None:
            error_type = type(error).__name__
        if error_type is not None:
            attributes["error.type"] = error_type
        self.http_duration.record(time.perf_counter() - attempt.started, attributes)
        if span.is_recording():
            span.set_attributes(attributes)
            if body_size is not None and 0 <= body_size <= _MAX_INT64:
                span.set_attribute("http.response.body.size", body_size)
            if error_type is not None:
                # The type only: messages may quote what a server sent.
                span.set_status(self._error, error_type)
        span.end()

    # -- producer batches --------------------------------------------------------------------

    @_fail_safe
    def start_batch(
        self, producer_id: str, epoch: int, seq: int, messages: int, size: int, close: bool
    ) -> tuple[Span, Token[Context]]:
        """Start a batch's span and make it current (its HTTP attempts become children)."""
        span = self.tracer.start_span("durable_streams.producer.batch", kind=self._internal)
        if span.is_recording():
            span.set_attributes(
                {
                    "durable_streams.producer.id": producer_id,
                    "durable_streams.producer.epoch": epoch,
                    "durable_streams.producer.seq": seq,
                    "messaging.batch.message_count": messages,
                    "durable_streams.batch.bytes": size,
                    "durable_streams.batch.close": close,
                }
            )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    @_fail_safe
    def end_batch(
        self, span: Span, token: Token[Context], outcome: str, error: BaseException | None
    ) -> None:
        """End a batch's span: ``outcome`` is stored, duplicate, failed or requeued."""
        self._context.detach(token)
        if span.is_recording():
            span.set_attribute("durable_streams.batch.outcome", outcome)
            if error is not None:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(self._error, type(error).__name__)
        span.end()

    @_fail_safe
    def acked(self, messages: int, size: int, duplicate: bool) -> None:
        self.acked_messages.add(messages)
        self.acked_bytes.add(size)
        if duplicate:
            self.duplicate_messages.add(messages)

    @_fail_safe
    def watch_producer(self, producer: WatchedProducer) -> None:
        """Count ``producer`` in the in-flight and buffered gauges while it lives."""
        self._producers.add(producer)

    @_fail_safe
    def forget_producer(self, producer: WatchedProducer) -> None:
        """Stop counting ``producer`` (it stopped)."""
        self._producers.discard(producer)

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        yield self._observation(sum(p.in_flight for p in list(self._producers)))

    def _observe_buffered(self, options: CallbackOptions) -> Iterable[Observation]:
        yield self._observation(sum(p.buffered_bytes for p in list(self._producers)))

    # -- consumers ---------------------------------------------------------------------------

    @_fail_safe
    def start_commit(self, consumer: str, items: int, offset: str) -> tuple[Span, float]:
        """Start a commit's span, linked to the read request that delivered the data."""
        read = LAST_READ_SPAN.get()
        links = [self._link(read)] if read is not None and read.is_valid else None
        span = self.tracer.start_span(
            "durable_streams.consumer.commit", kind=self._internal, links=links
        )
        if span.is_recording():
            span.set_attributes(
                {
                    "durable_streams.consumer.name": consumer,
                    "durable_streams.consumer.items": items,
                    "durable_streams.consumer.offset": offset,
                }
            )
        return span, time.perf_counter()

    @_fail_safe
    def end_commit(
        self, commit: tuple[Span, float] | None, consumer: str, error: BaseException | None
    ) -> None:
        """End a commit's span (``commit`` is what :meth:`start_commit` gave, None if it failed)."""
        if commit is None:
            return
        span, started = commit
        attributes = {"durable_streams.consumer.name": consumer}
        if error is not None:
            attributes["error.type"] = type(error).__name__
            if span.is_recording():
                span.set_status(self._error, type(error).__name__)
                span.set_attribute("error.type", type(error).__name__)
        self.commit_duration.record(time.perf_counter() - started, attributes)
        span.end()

    @_fail_safe
    def handled(self, consumer: str, items: int) -> None:
        if items:
            self.consumer_items.add(items, {"durable_streams.consumer.name": consumer})

    @_fail_safe
    def watch_consumer(self, consumer: WatchedConsumer) -> None:
        """Report ``consumer`` in the caught-up gauge until it is closed."""
        self._consumers.add(consumer)

    @_fail_safe
    def forget_consumer(self, consumer: WatchedConsumer) -> None:
        self._consumers.discard(consumer)

    def _observe_caught_up(self, options: CallbackOptions) -> Iterator[Observation]:
        for consumer in list(self._consumers):
            yield self._observation(
                int(consumer.caught_up), {"durable_streams.consumer.name": consumer.name}
            )

    # -- readers -----------------------------------------------------------------------------

    @_fail_safe
    def reconnected(self, mode: str) -> None:
        self.reconnects.add(1, {"durable_streams.read.mode": mode})

    @_fail_safe
    def epoch_changed(self) -> None:
        self.epoch_changes.add(1)

    @_fail_safe
    def failed(self, messages: int) -> None:
        self.failed_messages.add(messages)

    @_fail_safe
    def retried(self) -> None:
        self.producer_retries.add(1)


class RequestSpan:
    """One HTTP attempt being traced (exists only while OpenTelemetry is loaded)."""

    __slots__ = ("request", "span", "started", "telemetry")

    def __init__(self, telemetry: Telemetry, span: Span, request: httpx.Request) -> None:
        self.telemetry = telemetry
        self.span = span
        self.request = request
        self.started = time.perf_counter()

    def end(
        self,
        response: httpx.Response | None = None,
        error: BaseException | None = None,
        body_size: int | None = None,
    ) -> None:
        """End the span: with the response (status), or the error that ended the attempt."""
        self.telemetry.end_request(self, response, error, body_size)


#: The loaded API, or None: not installed, or :func:`load` not called yet.
OTEL: Telemetry | None = None
_loaded = False


def load() -> Telemetry | None:
    """Import the OpenTelemetry API once (cheap after the first call); None without it."""
    global OTEL, _loaded
    if not _loaded:
        _loaded = True
        try:
            OTEL = Telemetry()
        except ImportError:
            OTEL = None
    return OTEL
