"""Async client for the Durable Streams protocol.

Append-only byte streams over plain HTTP: every read returns the offset to
resume from, and idempotent producers make writes exactly-once.

Example::

    from durable_streams import StreamHandle

    async with StreamHandle("http://127.0.0.1:4437/v1/stream/chat-42") as handle:
        await handle.create(content_type="application/json")
        await handle.append({"role": "user", "text": "hi"})
"""

from ._api import append, close, create, delete, head, stream
from ._append import AppendRetry
from ._errors import (
    AppendOutcomeUnknownError,
    BadRequestError,
    ConflictError,
    DurableStreamError,
    EmptyAppendError,
    ForbiddenError,
    GoneError,
    InvalidArgumentError,
    InvalidItemError,
    InvalidOffsetError,
    NetworkError,
    NotFoundError,
    NotSupportedError,
    ParseError,
    PayloadTooLargeError,
    ProducerBufferFullError,
    ProducerClosedError,
    ProducerError,
    ProducerFlushError,
    ProducerIdentityError,
    ProducerSequenceGapError,
    RateLimitedError,
    RequestTimeoutError,
    SequenceConflictError,
    ServerError,
    StaleEpochError,
    StatusError,
    StreamClosedError,
    StreamConfigMismatchError,
    TransportError,
    UnauthorizedError,
    UsageError,
    ValidationError,
)
from ._handle import DurableStream, StreamHandle
from ._models import (
    AppendResult,
    Batch,
    BatchFailure,
    CloseResult,
    ControlEvent,
    CreateResult,
    RetryWith,
    StreamInfo,
)
from ._producer import IdempotentProducer, ProducerAck, ProducerOnError, ProducerStats
from ._protocol import OFFSET_NOW, OFFSET_START, LiveMode
from ._request import StreamRequest
from ._response import StreamResponse
from ._retry import RetryPolicy
from ._transport import DEFAULT_TIMEOUT, new_client

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "OFFSET_NOW",
    "OFFSET_START",
    "AppendOutcomeUnknownError",
    "AppendResult",
    "AppendRetry",
    "Batch",
    "BadRequestError",
    "BatchFailure",
    "CloseResult",
    "ConflictError",
    "ControlEvent",
    "CreateResult",
    "DurableStream",
    "DurableStreamError",
    "EmptyAppendError",
    "ForbiddenError",
    "GoneError",
    "IdempotentProducer",
    "InvalidArgumentError",
    "InvalidItemError",
    "InvalidOffsetError",
    "LiveMode",
    "NetworkError",
    "NotFoundError",
    "NotSupportedError",
    "ParseError",
    "PayloadTooLargeError",
    "ProducerAck",
    "ProducerBufferFullError",
    "ProducerClosedError",
    "ProducerError",
    "ProducerFlushError",
    "ProducerIdentityError",
    "ProducerOnError",
    "ProducerStats",
    "ProducerSequenceGapError",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "RetryWith",
    "SequenceConflictError",
    "ServerError",
    "StaleEpochError",
    "StatusError",
    "StreamClosedError",
    "StreamConfigMismatchError",
    "StreamHandle",
    "StreamInfo",
    "TransportError",
    "StreamRequest",
    "StreamResponse",
    "UnauthorizedError",
    "UsageError",
    "ValidationError",
    "__version__",
    "append",
    "close",
    "create",
    "delete",
    "head",
    "new_client",
    "stream",
]
