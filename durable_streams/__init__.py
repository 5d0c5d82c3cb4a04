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
from ._errors import (
    AppendOutcomeUnknownError,
    BadRequestError,
    BatchFailure,
    ConflictError,
    DurableStreamError,
    EmptyAppendError,
    ForbiddenError,
    GoneError,
    InvalidArgumentError,
    InvalidJsonError,
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
from ._limits import ReadLimits
from ._models import (
    AppendResult,
    Batch,
    CloseResult,
    ControlEvent,
    CreateResult,
    ProducerAck,
    ProducerStats,
    StreamInfo,
)
from ._position import Position, PositionUnit
from ._producer import IdempotentProducer
from ._protocol import OFFSET_NOW, OFFSET_START
from ._response import StreamRequest, StreamResponse
from ._retry import RetryPolicy
from ._transport import DEFAULT_TIMEOUT, new_client
from ._types import (
    AppendRetry,
    HeadersArg,
    LiveMode,
    OnError,
    ParamsArg,
    ProducerOnError,
    RetryWith,
    ValueSource,
)

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
    "InvalidJsonError",
    "HeadersArg",
    "InvalidOffsetError",
    "LiveMode",
    "NetworkError",
    "NotFoundError",
    "NotSupportedError",
    "OnError",
    "ParamsArg",
    "ParseError",
    "Position",
    "PositionUnit",
    "PayloadTooLargeError",
    "ProducerAck",
    "ProducerBufferFullError",
    "ProducerClosedError",
    "ProducerError",
    "ProducerFlushError",
    "ProducerOnError",
    "ProducerStats",
    "ProducerSequenceGapError",
    "RateLimitedError",
    "ReadLimits",
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
    "ValueSource",
    "__version__",
    "append",
    "close",
    "create",
    "delete",
    "head",
    "new_client",
    "stream",
]
