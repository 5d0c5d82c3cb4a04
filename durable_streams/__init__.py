"""Async client for the Durable Streams protocol.

Append-only byte streams over plain HTTP: every read returns the offset to
resume from, and idempotent producers make writes exactly-once.

Example::

    from durable_streams import StreamHandle

    async with StreamHandle("http://127.0.0.1:4437/v1/stream/chat-42") as handle:
        await handle.create(content_type="application/json")
        await handle.append({"role": "user", "text": "hi"})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time see __getattr__ below
    from ._api import (
        append,
        close,
        create,
        delete,
        head,
        stream,
    )
    from ._checkpoints import (
        CheckpointKey,
        CheckpointStore,
        FileCheckpoints,
        MemoryCheckpoints,
        SQLiteCheckpoints,
    )
    from ._consumer import (
        CommitEvery,
        Consumer,
        FailureAction,
        ItemFailure,
        OnItemError,
    )
    from ._errors import (
        AckOffsetError,
        AlreadyClaimedError,
        AppendOutcomeUnknownError,
        BadRequestError,
        BatchFailure,
        CheckpointCorruptError,
        CheckpointError,
        ConflictError,
        DurableStreamError,
        EmptyAppendError,
        FencedError,
        ForbiddenError,
        GoneError,
        InvalidArgumentError,
        InvalidItemError,
        InvalidJsonError,
        InvalidOffsetError,
        InvalidSubscriptionRequestError,
        NetworkError,
        NoPendingWorkError,
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
        SubscriptionExistsError,
        SubscriptionNotFoundError,
        TransportError,
        UnauthorizedError,
        UsageError,
        ValidationError,
        WakeTokenError,
        WakeTokenExpiredError,
        WebhookUrlRejectedError,
        WebhookVerificationError,
    )
    from ._handle import (
        DurableStream,
        StreamHandle,
    )
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
    from ._position import (
        Position,
        PositionUnit,
    )
    from ._producer import IdempotentProducer
    from ._protocol import (
        OFFSET_NOW,
        OFFSET_START,
    )
    from ._response import (
        StreamRequest,
        StreamResponse,
    )
    from ._retry import RetryPolicy
    from ._transport import (
        DEFAULT_TIMEOUT,
        new_client,
    )
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
    "AckOffsetError",
    "AlreadyClaimedError",
    "FencedError",
    "InvalidSubscriptionRequestError",
    "NoPendingWorkError",
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "WakeTokenError",
    "WakeTokenExpiredError",
    "WebhookUrlRejectedError",
    "WebhookVerificationError",
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


#: Where each public name lives. Importing the package loads none of them: a name's module is
#: imported on first access (PEP 562), so ``import durable_streams.cli`` stays fast enough for a
#: ``--help`` under 300 ms; httpx and pydantic alone take ~200 ms to import.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._api": (
        "append",
        "close",
        "create",
        "delete",
        "head",
        "stream",
    ),
    "._checkpoints": (
        "CheckpointKey",
        "CheckpointStore",
        "FileCheckpoints",
        "MemoryCheckpoints",
        "SQLiteCheckpoints",
    ),
    "._consumer": (
        "CommitEvery",
        "Consumer",
        "FailureAction",
        "ItemFailure",
        "OnItemError",
    ),
    "._errors": (
        "AppendOutcomeUnknownError",
        "BadRequestError",
        "BatchFailure",
        "CheckpointCorruptError",
        "CheckpointError",
        "ConflictError",
        "DurableStreamError",
        "EmptyAppendError",
        "ForbiddenError",
        "GoneError",
        "InvalidArgumentError",
        "InvalidItemError",
        "InvalidJsonError",
        "InvalidOffsetError",
        "NetworkError",
        "NotFoundError",
        "NotSupportedError",
        "ParseError",
        "PayloadTooLargeError",
        "PositionRejectedError",
        "ProducerBufferFullError",
        "ProducerClosedError",
        "ProducerError",
        "ProducerFlushError",
        "ProducerIdentityError",
        "ProducerSequenceGapError",
        "RateLimitedError",
        "RequestTimeoutError",
        "SequenceConflictError",
        "ServerError",
        "StaleEpochError",
        "AckOffsetError",
        "AlreadyClaimedError",
        "FencedError",
        "InvalidSubscriptionRequestError",
        "NoPendingWorkError",
        "SubscriptionExistsError",
        "SubscriptionNotFoundError",
        "WakeTokenError",
        "WakeTokenExpiredError",
        "WebhookUrlRejectedError",
        "WebhookVerificationError",
        "StatusError",
        "StreamClosedError",
        "StreamConfigMismatchError",
        "TransportError",
        "UnauthorizedError",
        "UsageError",
        "ValidationError",
    ),
    "._handle": (
        "DurableStream",
        "StreamHandle",
    ),
    "._limits": ("ReadLimits",),
    "._models": (
        "AppendResult",
        "Batch",
        "CloseResult",
        "ControlEvent",
        "CreateResult",
        "ProducerAck",
        "ProducerStats",
        "StreamInfo",
    ),
    "._position": (
        "Position",
        "PositionUnit",
    ),
    "._producer": ("IdempotentProducer",),
    "._protocol": (
        "OFFSET_NOW",
        "OFFSET_START",
    ),
    "._response": (
        "StreamRequest",
        "StreamResponse",
    ),
    "._retry": ("RetryPolicy",),
    "._transport": (
        "DEFAULT_TIMEOUT",
        "new_client",
    ),
    "._types": (
        "AppendRetry",
        "HeadersArg",
        "LiveMode",
        "OnError",
        "ParamsArg",
        "ProducerIdentity",
        "ProducerOnError",
        "RetryWith",
        "ValueSource",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
