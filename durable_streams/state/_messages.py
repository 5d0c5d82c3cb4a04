"""The State Protocol's messages: change and control, typed with pydantic.

A change message sets or removes one entity (``type``, ``key``) and says how in
``headers.operation``; a control message (``headers.control``) marks snapshot
boundaries or tells readers to reset. :func:`parse_message` tells the two
apart and reports anything else as :class:`InvalidStateMessageError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from durable_streams import DurableStreamError, Position, ValidationError

__all__ = [
    "OPERATIONS",
    "ChangeHeaders",
    "ChangeMessage",
    "ControlHeaders",
    "ControlKind",
    "ControlMessage",
    "InvalidStateMessageError",
    "Operation",
    "StateError",
    "StateMessage",
    "parse_message",
]

V = TypeVar("V")

Operation = Literal["insert", "update", "delete", "upsert"]
"""What a change does: ``insert``/``update``/``upsert`` store the value, ``delete`` removes it."""

OPERATIONS: frozenset[str] = frozenset(("insert", "update", "delete", "upsert"))

ControlKind = Literal["snapshot-start", "snapshot-end", "reset"]
"""A control message's signal."""

#: Optional change headers: left out of the JSON when absent (never written as null).
_OPTIONAL_HEADERS = frozenset(("txid", "timestamp", "from", "from_", "offset"))


class StateError(DurableStreamError):
    """Base class of the errors of :mod:`durable_streams.state`."""

    code = "STATE_ERROR"


class InvalidStateMessageError(ValidationError, StateError):
    """A message on a state stream that is neither a valid change nor a valid control
    message, or whose value fails its collection's model.

    ``raw`` is the message as read, ``position`` where it was read (when known),
    ``entity_type`` its ``type`` if it had one.
    """

    code = "PARSE_ERROR"

    def __init__(
        self,
        message: str,
        *,
        raw: object = None,
        position: Position | None = None,
        entity_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("offset", position.offset if position is not None else None)
        super().__init__(message, **kwargs)
        self.raw = raw
        self.position = position
        self.entity_type = entity_type

    def __str__(self) -> str:
        text = super().__str__()
        if self.position is not None and str(self.position) not in text:
            text += f" (read at {self.position})"
        return text


class ChangeHeaders(BaseModel):
    """The headers of a change message; unknown headers are kept as extra fields.

    ``from_`` is the ``from`` header (a Python keyword). ``offset`` is set by
    some servers (the reference server stamps the message's own offset).
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    operation: Operation
    txid: str | None = Field(default=None, min_length=1)
    timestamp: str | None = None
    from_: str | None = Field(default=None, alias="from")
    offset: str | None = None

    @pydantic.model_serializer(mode="wrap")
    def _absent_headers_left_out(
        self, handler: pydantic.SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _OPTIONAL_HEADERS}


class ChangeMessage(BaseModel, Generic[V]):
    """One change to the entity ``key`` of type ``type``.

    ``value`` is required for ``insert``, ``update`` and ``upsert`` (any JSON
    value, ``null`` included) and optional for ``delete``; ``old_value`` is the
    previous value when the writer knew it. Unknown fields are kept.

    Example::

        change = ChangeMessage[dict[str, str]].model_validate(
            {"type": "user", "key": "u1", "value": {"name": "Ada"},
             "headers": {"operation": "insert", "txid": "t1"}}
        )
        assert change.operation == "insert" and change.txid == "t1"
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)
    key: str = Field(min_length=1)
    value: V | None = None
    old_value: V | None = None
    headers: ChangeHeaders

    @pydantic.model_validator(mode="after")
    def _value_when_needed(self) -> ChangeMessage[V]:
        if self.headers.operation != "delete" and "value" not in self.model_fields_set:
            raise ValueError(f"{self.headers.operation} changes need a value")
        return self

    @pydantic.model_serializer(mode="wrap")
    def _unset_values_left_out(
        self, handler: pydantic.SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ("value", "old_value"):
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data

    @property
    def operation(self) -> Operation:
        """``headers.operation``."""
        return self.headers.operation

    @property
    def txid(self) -> str | None:
        """``headers.txid``: the transaction the change belongs to, if any."""
        return self.headers.txid

    def to_json(self) -> dict[str, Any]:
        """The message as a JSON-ready dict, as written to a stream (unset fields left out).

        Example::

            await handle.append(change.to_json())
        """
        return self.model_dump(mode="json", by_alias=True)


class ControlHeaders(BaseModel):
    """The headers of a control message; unknown headers are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    control: ControlKind
    offset: str | None = None

    @pydantic.model_serializer(mode="wrap")
    def _absent_offset_left_out(
        self, handler: pydantic.SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("offset", "") is None:
            del data["offset"]
        return data


class ControlMessage(BaseModel):
    """A signal to readers: ``snapshot-start``/``snapshot-end`` bracket a full snapshot,
    ``reset`` tells them to drop what they materialized.

    Example::

        await handle.append(ControlMessage.reset().to_json())
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    headers: ControlHeaders

    @property
    def control(self) -> ControlKind:
        """``headers.control``."""
        return self.headers.control

    @classmethod
    def reset(cls, *, offset: str | None = None) -> ControlMessage:
        """A ``reset`` message (``offset``: where readers should rebuild from, if not here).

        Example::

            await handle.append(ControlMessage.reset().to_json())
        """
        return cls._make("reset", offset)

    @classmethod
    def snapshot_start(cls, *, offset: str | None = None) -> ControlMessage:
        """A ``snapshot-start`` message.

        Example::

            await handle.append_many([ControlMessage.snapshot_start().to_json(), *changes])
        """
        return cls._make("snapshot-start", offset)

    @classmethod
    def snapshot_end(cls, *, offset: str | None = None) -> ControlMessage:
        """A ``snapshot-end`` message.

        Example::

            await handle.append(ControlMessage.snapshot_end().to_json())
        """
        return cls._make("snapshot-end", offset)

    @classmethod
    def _make(cls, control: ControlKind, offset: str | None) -> ControlMessage:
        return cls(headers=ControlHeaders(control=control, offset=offset))

    def to_json(self) -> dict[str, Any]:
        """The message as a JSON-ready dict, as written to a stream.

        Example::

            await handle.append(ControlMessage.reset().to_json())
        """
        return self.model_dump(mode="json")


StateMessage = Union[ChangeMessage[Any], ControlMessage]  # noqa: UP007 (an alias used at runtime)
"""A parsed state message: a change or a control message."""

_ANY_CHANGE: pydantic.TypeAdapter[ChangeMessage[Any]] = pydantic.TypeAdapter(ChangeMessage[Any])


def parse_message(raw: object, *, position: Position | None = None) -> StateMessage:
    """Parse one stream item as a change or a control message (values left as JSON).

    A message is a change when its ``headers`` has ``operation``, a control
    message when it has ``control``. Anything else, and a change or control
    message that breaks the protocol's rules, raises
    :class:`InvalidStateMessageError` naming ``position``.

    Example::

        message = parse_message({"headers": {"control": "reset"}})
        assert isinstance(message, ControlMessage) and message.control == "reset"
    """
    if isinstance(raw, (ChangeMessage, ControlMessage)):
        return raw
    headers = raw.get("headers") if isinstance(raw, Mapping) else None
    if not isinstance(headers, Mapping):
        raise invalid_message("a state message is an object with a headers object", raw, position)
    try:
        if "operation" in headers:
            return _ANY_CHANGE.validate_python(raw)
        if "control" in headers:
            return ControlMessage.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise invalid_message(_describe(exc), raw, position, cause=exc) from exc
    raise invalid_message(
        "a state message's headers need an operation (a change) or a control", raw, position
    )


def invalid_message(
    reason: str,
    raw: object,
    position: Position | None,
    *,
    entity_type: str | None = None,
    cause: Exception | None = None,
) -> InvalidStateMessageError:
    """The error reporting ``raw`` as invalid (kept short: the item is excerpted)."""
    if entity_type is None and isinstance(raw, Mapping):
        found = raw.get("type")
        entity_type = found if isinstance(found, str) else None
    error = InvalidStateMessageError(
        f"invalid state message: {reason}: {excerpt(repr(raw), 200)}",
        raw=raw,
        position=position,
        entity_type=entity_type,
    )
    error.__cause__ = cause
    return error


def _describe(exc: pydantic.ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "message"
    return f"{where}: {first['msg']}"


def excerpt(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters (for error messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
