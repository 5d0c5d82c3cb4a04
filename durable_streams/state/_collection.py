"""Collections: a value model, the entity ``type`` it is stored under and its primary key.

A :class:`Collection` validates values and builds change messages
(``insert``/``update``/``upsert``/``delete``) that fill ``type``, ``key``
(from the primary key) and ``headers``. Declared on a
:class:`~durable_streams.state.StreamState` subclass, the same attribute read
on an instance is a :class:`CollectionView`: typed, read-only access to what
that view materialized. :class:`Transaction` groups changes under one txid.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar, overload

import pydantic

from durable_streams import InvalidArgumentError

from ._messages import ChangeHeaders, ChangeMessage, ControlMessage, Operation

__all__ = [
    "RESERVED_NAMES",
    "Collection",
    "CollectionView",
    "StateSource",
    "Transaction",
    "format_timestamp",
]

T = TypeVar("T")

#: Attribute names a collection cannot take on a StreamState (they are its own).
RESERVED_NAMES = frozenset(
    (
        "state",
        "position",
        "offset",
        "preload",
        "follow",
        "close",
        "aclose",
        "save_snapshot",
        "wait_for_txid",
        "collections",
        "caught_up",
        "closed",
        "handle",
    )
)


class StateSource(Protocol):
    """What a :class:`CollectionView` reads: one entity type's entities."""

    def get_type(self, type: str) -> Mapping[str, Any]:
        """The entities of ``type`` by key (empty if none)."""
        ...


class _HasState(Protocol):
    @property
    def state(self) -> StateSource: ...


class Collection(Generic[T]):
    """One kind of entity on a state stream: its value ``model``, ``type`` and primary key.

    ``model`` is a pydantic model or any type pydantic validates. Values are
    validated when messages are built and when they are materialized. The
    builders derive ``key`` from the value's ``primary_key`` field (a str, or
    an int written as its decimal string) unless ``key=`` is given.

    Declared as a class attribute of a :class:`StreamState` subclass, reading
    it on an instance gives that view's :class:`CollectionView`.

    Example::

        class User(BaseModel):
            id: str
            name: str

        users = Collection(User, type="user", primary_key="id")
        await handle.append(users.insert(User(id="u1", name="Ada"), txid="t1"))
        await handle.append(users.delete(key="u1"))
    """

    def __init__(self, model: type[T], *, type: str, primary_key: str) -> None:
        if not isinstance(type, str) or not type:
            raise InvalidArgumentError(
                "a collection's type must be a non-empty string", field="type"
            )
        if not isinstance(primary_key, str) or not primary_key:
            raise InvalidArgumentError(
                "a collection's primary_key must be a non-empty string", field="primary_key"
            )
        self.model = model
        self.type = type
        self.primary_key = primary_key
        self.name: str | None = None
        self.adapter: pydantic.TypeAdapter[T] = pydantic.TypeAdapter(model)

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Collection[T]: ...
    @overload
    def __get__(self, instance: _HasState, owner: type[Any]) -> CollectionView[T]: ...

    def __get__(
        self, instance: _HasState | None, owner: type[Any]
    ) -> Collection[T] | CollectionView[T]:
        if instance is None:
            return self
        return CollectionView(self, instance.state)

    def __repr__(self) -> str:
        return (
            f"Collection({_name(self.model)}, type={self.type!r}, primary_key={self.primary_key!r})"
        )

    # -- values --------------------------------------------------------------------------------

    def validate(self, value: object) -> T:
        """``value`` validated as this collection's model (raises pydantic's ValidationError).

        Example::

            user = users.validate({"id": "u1", "name": "Ada"})
        """
        return self.adapter.validate_python(value)

    def dump(self, value: T) -> Any:
        """``value`` as JSON-ready data (what is written to the stream).

        Example::

            assert users.dump(User(id="u1", name="Ada")) == {"id": "u1", "name": "Ada"}
        """
        return self.adapter.dump_python(value, mode="json", by_alias=True)

    def key_of(self, value: object) -> str:
        """The key of ``value``: its primary-key field as a string.

        Example::

            assert users.key_of({"id": "u1", "name": "Ada"}) == "u1"
        """
        if isinstance(value, Mapping):
            found = value.get(self.primary_key)
        else:
            found = getattr(value, self.primary_key, None)
        if isinstance(found, bool) or not isinstance(found, (str, int)) or found == "":
            raise InvalidArgumentError(
                f"cannot derive a {self.type} key: the value's {self.primary_key!r} must be a "
                f"non-empty str or an int (or pass key=...), got {excerpt(repr(found), 80)}",
                field="key",
            )
        return str(found)

    def _checked(self, value: object, what: str) -> T:
        try:
            return self.validate(value)
        except pydantic.ValidationError as exc:
            raise InvalidArgumentError(
                f"{what} for {self.type} does not validate: {excerpt(str(exc), 300)}",
                field="value",
            ) from exc

    # -- builders --------------------------------------------------------------------------

    def insert(
        self,
        value: T | Mapping[str, Any],
        *,
        key: str | None = None,
        txid: str | None = None,
        timestamp: datetime | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChangeMessage[T]:
        """An ``insert`` change storing ``value`` (validated) at its key.

        Example::

            await handle.append(users.insert({"id": "u1", "name": "Ada"}, txid="t1"))
        """
        return self._change("insert", value, key, None, txid, timestamp, headers)

    def update(
        self,
        value: T | Mapping[str, Any],
        *,
        key: str | None = None,
        old_value: T | Mapping[str, Any] | None = None,
        txid: str | None = None,
        timestamp: datetime | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChangeMessage[T]:
        """An ``update`` change replacing the value at its key (``old_value``: the previous one).

        Example::

            await handle.append(users.update(User(id="u1", name="Ada L."), old_value=ada))
        """
        return self._change("update", value, key, old_value, txid, timestamp, headers)

    def upsert(
        self,
        value: T | Mapping[str, Any],
        *,
        key: str | None = None,
        txid: str | None = None,
        timestamp: datetime | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChangeMessage[T]:
        """An ``upsert`` change: insert or replace (the TypeScript package's extension).

        Example::

            await handle.append(users.upsert(User(id="u1", name="Ada")))
        """
        return self._change("upsert", value, key, None, txid, timestamp, headers)

    def delete(
        self,
        *,
        key: str | None = None,
        old_value: T | Mapping[str, Any] | None = None,
        txid: str | None = None,
        timestamp: datetime | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ChangeMessage[T]:
        """A ``delete`` change for ``key`` (or the key of ``old_value``).

        Example::

            await handle.append(users.delete(key="u1"))
        """
        if key is None and old_value is None:
            raise InvalidArgumentError(
                f"a {self.type} delete needs key= or old_value=", field="key"
            )
        return self._change("delete", None, key, old_value, txid, timestamp, headers)

    def _change(
        self,
        operation: Operation,
        value: object,
        key: str | None,
        old_value: object,
        txid: str | None,
        timestamp: datetime | str | None,
        headers: Mapping[str, str] | None,
    ) -> ChangeMessage[T]:
        fields: dict[str, Any] = {"type": self.type}
        if operation != "delete":
            fields["value"] = self._checked(value, f"the {operation} value")
        if old_value is not None:
            fields["old_value"] = self._checked(old_value, f"the {operation} old_value")
        if key is None:
            key = self.key_of(fields["value"] if operation != "delete" else fields["old_value"])
        elif not isinstance(key, str) or not key:
            raise InvalidArgumentError("key must be a non-empty string", field="key")
        fields["key"] = key
        extra = dict(headers or {})
        if "operation" in extra or "control" in extra:
            raise InvalidArgumentError("headers= cannot set operation or control", field="headers")
        if txid is not None:
            extra["txid"] = txid
        if timestamp is not None:
            extra["timestamp"] = format_timestamp(timestamp)
        try:
            fields["headers"] = ChangeHeaders.model_validate({**extra, "operation": operation})
        except pydantic.ValidationError as exc:
            raise InvalidArgumentError(
                f"invalid change headers: {excerpt(str(exc), 300)}", field="headers"
            ) from exc
        return ChangeMessage[Any].model_construct(_fields_set=set(fields), **fields)


class CollectionView(Generic[T]):
    """Typed, read-only access to one collection of a materialized state.

    ``view.get(key)``, ``key in view``, ``view[key]``, ``len(view)``,
    iteration over keys, ``items()`` and ``values()``. It reads the state
    live: later changes show through.

    Example::

        user = room.users.get("u1")
        print(len(room.users), sorted(room.users))
    """

    __slots__ = ("_collection", "_source")

    def __init__(self, collection: Collection[T], source: StateSource) -> None:
        self._collection = collection
        self._source = source

    @property
    def collection(self) -> Collection[T]:
        """The collection this view reads."""
        return self._collection

    def _entities(self) -> Mapping[str, T]:
        return self._source.get_type(self._collection.type)

    def get(self, key: str, default: T | None = None) -> T | None:
        """The value at ``key``, or ``default``.

        Example::

            user = room.users.get("u1")
        """
        return self._entities().get(key, default)

    def __getitem__(self, key: str) -> T:
        return self._entities()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entities()

    def __len__(self) -> int:
        return len(self._entities())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entities()))

    def keys(self) -> list[str]:
        """The keys, in the order they were first stored.

        Example::

            print(room.users.keys())
        """
        return list(self._entities())

    def values(self) -> list[T]:
        """The values, in key order of first storage.

        Example::

            names = [user.name for user in room.users.values()]
        """
        return list(self._entities().values())

    def items(self) -> list[tuple[str, T]]:
        """``(key, value)`` pairs.

        Example::

            for key, user in room.users.items():
                print(key, user.name)
        """
        return list(self._entities().items())

    def __repr__(self) -> str:
        return f"CollectionView({self._collection.type!r}, {len(self)} entities)"


class Transaction:
    """Changes that belong together under one ``txid``, written in one request.

    Build changes with the collections' builders through :meth:`insert` and
    friends (the txid is filled in), then write them all at once with
    ``handle.append_many(tx.messages)`` or ``producer.append_many(tx.messages)``
    (one producer batch). A writer then waits with
    ``await db.wait_for_txid(tx.txid)``.

    Example::

        tx = Transaction()
        tx.upsert(users, User(id="u1", name="Ada"))
        tx.insert(messages, Message(id="m1", user="u1", text="hi"))
        await handle.append_many(tx.messages)
    """

    def __init__(self, txid: str | None = None) -> None:
        self.txid = txid or uuid.uuid4().hex
        self._messages: list[ChangeMessage[Any] | ControlMessage] = []

    @property
    def messages(self) -> list[ChangeMessage[Any] | ControlMessage]:
        """The messages so far, in order."""
        return list(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[ChangeMessage[Any] | ControlMessage]:
        return iter(list(self._messages))

    def add(self, messages: Iterable[ChangeMessage[Any] | ControlMessage]) -> None:
        """Add messages built elsewhere (their txid is left as it is).

        Example::

            tx.add([ControlMessage.reset()])
        """
        self._messages.extend(messages)

    def insert(
        self, collection: Collection[T], value: T | Mapping[str, Any], **kwargs: Any
    ) -> None:
        """Add ``collection.insert(value, txid=self.txid, **kwargs)``.

        Example::

            tx.insert(users, {"id": "u1", "name": "Ada"})
        """
        self._messages.append(collection.insert(value, txid=self.txid, **kwargs))

    def update(
        self, collection: Collection[T], value: T | Mapping[str, Any], **kwargs: Any
    ) -> None:
        """Add ``collection.update(value, txid=self.txid, **kwargs)``.

        Example::

            tx.update(users, {"id": "u1", "name": "Ada L."})
        """
        self._messages.append(collection.update(value, txid=self.txid, **kwargs))

    def upsert(
        self, collection: Collection[T], value: T | Mapping[str, Any], **kwargs: Any
    ) -> None:
        """Add ``collection.upsert(value, txid=self.txid, **kwargs)``.

        Example::

            tx.upsert(users, {"id": "u1", "name": "Ada"})
        """
        self._messages.append(collection.upsert(value, txid=self.txid, **kwargs))

    def delete(self, collection: Collection[T], **kwargs: Any) -> None:
        """Add ``collection.delete(txid=self.txid, **kwargs)``.

        Example::

            tx.delete(users, key="u1")
        """
        self._messages.append(collection.delete(txid=self.txid, **kwargs))


def format_timestamp(when: datetime | str) -> str:
    """An RFC 3339 timestamp (UTC, ``Z``) for ``headers.timestamp``; strings pass unchanged.

    Example::

        stamp = format_timestamp(datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
        assert stamp == "2025-01-02T03:04:05Z"
    """
    if isinstance(when, str):
        return when
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise InvalidArgumentError(
            "timestamp must be an aware datetime or a str", field="timestamp"
        )
    text = when.astimezone(timezone.utc).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _name(model: object) -> str:
    return getattr(model, "__name__", repr(model))


def excerpt(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters (for error messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
