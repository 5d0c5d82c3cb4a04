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
from ._checkpoints import (
    CheckpointKey,
    CheckpointStore,
    FileCheckpoints,
    MemoryCheckpoints,
    SQLiteCheckpoints,
)
from ._consumer import CommitEvery, Consumer, FailureAction, ItemFailure, OnItemError
from ._errors import (
    AppendOutcomeUnknownError,
    BadRequestError,
    BatchFailure,
    CheckpointCorruptError,
    CheckpointError,
    ConflictError,
    DurableStreamError,
    EmptyAppendError,
    ForbiddenError,
    GoneError,
    InvalidArgumentError,
    InvalidItemError,
    InvalidJsonError,
    InvalidOffsetError,
    NetworkError,
    NotFoundError,
    NotSupportedError,
    ParseError,
    PayloadTooLargeError,
    PositionRejectedError,
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
    ProducerIdentity,
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
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointKey",
    "CheckpointStore",
    "CloseResult",
    "CommitEvery",
    "ConflictError",
    "Consumer",
    "ControlEvent",
    "CreateResult",
    "DurableStream",
    "DurableStreamError",
    "EmptyAppendError",
    "FailureAction",
    "FileCheckpoints",
    "ForbiddenError",
    "GoneError",
    "IdempotentProducer",
    "InvalidArgumentError",
    "InvalidJsonError",
    "HeadersArg",
    "InvalidItemError",
    "InvalidOffsetError",
    "ItemFailure",
    "LiveMode",
    "MemoryCheckpoints",
    "NetworkError",
    "NotFoundError",
    "NotSupportedError",
    "OnError",
    "OnItemError",
    "ParamsArg",
    "ParseError",
    "Position",
    "PositionRejectedError",
    "PositionUnit",
    "PayloadTooLargeError",
    "ProducerAck",
    "ProducerBufferFullError",
    "ProducerClosedError",
    "ProducerError",
    "ProducerFlushError",
    "ProducerIdentity",
    "ProducerIdentityError",
    "ProducerOnError",
    "ProducerStats",
    "ProducerSequenceGapError",
    "RateLimitedError",
    "ReadLimits",
    "RequestTimeoutError",
    "RetryPolicy",
    "RetryWith",
    "SQLiteCheckpoints",
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
