"""``MaterializedState``: the state a reader holds after applying a state stream in order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import pydantic

from durable_streams import InvalidArgumentError, Position

from ._collection import Collection
from ._messages import (
    OPERATIONS,
    ControlMessage,
    InvalidStateMessageError,
    invalid_message,
    parse_message,
)

__all__ = ["MaterializedState", "OnInvalid", "StateData"]

logger = logging.getLogger("durable_streams.state")

OnInvalid = Callable[[InvalidStateMessageError], object]
"""Called with each invalid message (or value) a state skipped."""

StateData = dict[str, dict[str, Any]]
"""A state as JSON-ready data: ``{type: {key: value}}``."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class MaterializedState:
    """Entities by type and key, kept current by applying state messages in stream order.

    ``insert``, ``update`` and ``upsert`` store the value at (``type``,
    ``key``), ``delete`` removes it, and a ``reset`` control message clears
    everything (snapshot markers change nothing). A repeated insert acts as an
    update, so replaying a stream gives the same state. Values of the types of
    ``collections`` are validated with their models (and stored as such);
    other types are stored as read. Invalid messages, and values that fail
    their model, are skipped and passed to ``on_invalid`` (logged at WARNING
    without one); other types go on.

    As in the TypeScript package, a type is listed in ``types`` once any change
    named it (even a delete of a key it never had), until ``clear()``/reset.

    Example::

        state = MaterializedState([users])
        state.apply({"type": "user", "key": "u1", "value": {"id": "u1", "name": "Ada"},
                     "headers": {"operation": "insert"}})
        assert state.get("user", "u1") == User(id="u1", name="Ada")
    """

    def __init__(
        self,
        collections: Iterable[Collection[Any]] = (),
        *,
        on_invalid: OnInvalid | None = None,
    ) -> None:
        self._collections: dict[str, Collection[Any]] = {}
        for collection in collections:
            if collection.type in self._collections:
                raise InvalidArgumentError(
                    f"two collections share the type {collection.type!r}", field="collections"
                )
            self._collections[collection.type] = collection
        self._on_invalid = on_invalid
        self._data: dict[str, dict[str, Any]] = {}

    # -- applying --------------------------------------------------------------------------

    def apply(self, message: object, *, position: Position | None = None) -> bool:
        """Apply one message (a parsed one, or an item as read); returns whether it was valid.

        An invalid message (or value) changes nothing and is reported to
        ``on_invalid``; ``position`` is where it was read, for the report.

        Example::

            state.apply(users.insert(User(id="u1", name="Ada")))
        """
        if type(message) is dict:
            # The hot path (items as read): the rules of ChangeMessage checked by hand; a
            # message that breaks any of them goes through pydantic to be reported.
            headers = message.get("headers")
            if type(headers) is dict:
                operation = headers.get("operation")
                type_ = message.get("type")
                key = message.get("key")
                if (
                    operation in OPERATIONS
                    and type(type_) is str
                    and type_
                    and type(key) is str
                    and key
                    and _optional_headers_ok(headers)
                    and (operation == "delete" or "value" in message)
                ):
                    return self._change(
                        type_, key, operation, message.get("value"), message, position
                    )
        try:
            parsed = parse_message(message, position=position)
        except InvalidStateMessageError as error:
            self._report(error)
            return False
        if isinstance(parsed, ControlMessage):
            if parsed.control == "reset":
                self.clear()
            return True
        return self._change(
            parsed.type, parsed.key, parsed.headers.operation, parsed.value, message, position
        )

    def _change(
        self,
        type_: str,
        key: str,
        operation: object,
        value: Any,
        message: object,
        position: Position | None,
    ) -> bool:
        entities = self._data.get(type_)
        if entities is None:
            entities = self._data[type_] = {}
        if operation == "delete":
            entities.pop(key, None)
            return True
        collection = self._collections.get(type_)
        if collection is not None:
            try:
                value = collection.validate(value)
            except pydantic.ValidationError as exc:
                self._report(
                    invalid_message(
                        f"the value does not validate as {type_}: {excerpt(str(exc), 300)}",
                        message,
                        position,
                        entity_type=type_,
                        cause=exc,
                    )
                )
                return False
        entities[key] = value
        return True

    def apply_many(self, messages: Iterable[object]) -> int:
        """Apply messages in order; returns how many were valid.

        Example::

            state.apply_many(tx.messages)
        """
        apply = self.apply
        return sum(1 for message in messages if apply(message))

    def _report(self, error: InvalidStateMessageError) -> None:
        if self._on_invalid is None:
            logger.warning("skipped %s", error)
        else:
            self._on_invalid(error)

    # -- reading ---------------------------------------------------------------------------

    def get(self, type: str, key: str) -> Any:
        """The value at (``type``, ``key``), or None.

        Example::

            ada = state.get("user", "u1")
        """
        entities = self._data.get(type)
        return None if entities is None else entities.get(key)

    def get_type(self, type: str) -> Mapping[str, Any]:
        """The entities of ``type`` by key: a read-only, live mapping (empty if none).

        Example::

            for key, user in state.get_type("user").items():
                print(key, user)
        """
        entities = self._data.get(type)
        return _EMPTY if entities is None else MappingProxyType(entities)

    @property
    def types(self) -> list[str]:
        """The entity types present, in order of first appearance.

        Example::

            print(state.types)
        """
        return list(self._data)

    @property
    def type_count(self) -> int:
        """How many types are present."""
        return len(self._data)

    @property
    def collections(self) -> Mapping[str, Collection[Any]]:
        """The declared collections by entity type."""
        return MappingProxyType(self._collections)

    def __len__(self) -> int:
        """The number of entities, all types together."""
        return sum(len(entities) for entities in self._data.values())

    def clear(self) -> None:
        """Drop everything (what a ``reset`` message does).

        Example::

            state.clear()
        """
        self._data.clear()

    # -- as data ---------------------------------------------------------------------------

    def to_data(self) -> StateData:
        """The state as JSON-ready data, ``{type: {key: value}}`` (typed values dumped).

        Example::

            json.dumps(state.to_data())
        """
        data: StateData = {}
        for type_, entities in self._data.items():
            collection = self._collections.get(type_)
            if collection is None:
                data[type_] = dict(entities)
            else:
                dump = collection.dump
                data[type_] = {key: dump(value) for key, value in entities.items()}
        return data

    def load_data(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the state with ``data`` (as :meth:`to_data` made it; values validated).

        Raises :class:`InvalidStateMessageError` if a value fails its model.

        Example::

            restored = MaterializedState([users])
            restored.load_data(state.to_data())
        """
        loaded: dict[str, dict[str, Any]] = {}
        for type_, entities in data.items():
            collection = self._collections.get(type_)
            if collection is None:
                loaded[type_] = dict(entities)
                continue
            try:
                loaded[type_] = {key: collection.validate(v) for key, v in entities.items()}
            except pydantic.ValidationError as exc:
                raise invalid_message(
                    f"a stored {type_} value does not validate: {excerpt(str(exc), 300)}",
                    None,
                    None,
                    entity_type=type_,
                    cause=exc,
                ) from exc
        self._data = loaded

    def __repr__(self) -> str:
        return f"MaterializedState({len(self)} entities in {self.type_count} types)"


def _optional_headers_ok(headers: dict[str, Any]) -> bool:
    """Whether the optional change headers are absent, null or strings (a txid non-empty)."""
    txid = headers.get("txid")
    if txid is not None and (type(txid) is not str or not txid):
        return False
    for name in ("timestamp", "from", "offset"):
        found = headers.get(name)
        if found is not None and type(found) is not str:
            return False
    return True


def excerpt(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters (for error messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
