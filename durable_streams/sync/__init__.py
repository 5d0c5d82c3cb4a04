"""The SDK for code that is not async: Django/Flask views, Celery tasks, scripts, notebooks.

Not a second implementation: every call runs the async core on one background
event loop thread shared by the process (started on first use, stopped at
exit after open producers are flushed), so the errors, retries, limits and
guarantees are those of :mod:`durable_streams`. Reads are plain iterators.
Objects are safe to share between threads. Calling from a running event loop
raises :class:`~durable_streams.UsageError`: use the async API there.
``KeyboardInterrupt`` and :func:`fail_after` deadlines cancel the work under way.

Example::

    from durable_streams.sync import IdempotentProducer, StreamHandle

    with StreamHandle("http://127.0.0.1:4437/v1/stream/orders") as handle:
        handle.create(content_type="application/json")
        with IdempotentProducer(handle, "web-1", auto_claim=True) as producer:
            producer.append({"order": 7})
        with handle.stream(offset="-1") as res:
            for order in res.iter_json():
                print(order)
"""

from ._consumer import Consumer
from ._handle import StreamHandle
from ._portal import fail_after
from ._producer import IdempotentProducer
from ._response import StreamResponse

__all__ = ["Consumer", "IdempotentProducer", "StreamHandle", "StreamResponse", "fail_after"]
