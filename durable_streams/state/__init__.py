"""The State Protocol: typed change messages and live, resumable materialized views.

A state stream is a JSON stream whose messages are changes to keyed entities
(``insert``/``update``/``upsert``/``delete``) and control signals
(``snapshot-start``/``snapshot-end``/``reset``). This package reads and writes
them interoperably with the TypeScript package ``@durable-streams/state``:

- :class:`ChangeMessage`, :class:`ControlMessage`, :func:`parse_message`: the
  messages, as pydantic models;
- :class:`Collection`: a value model, its entity ``type`` and primary key, and
  builders (``insert``, ``update``, ``upsert``, ``delete``); :class:`Transaction`
  groups changes under one txid;
- :class:`MaterializedState`: apply messages, read the result;
- :class:`StreamState`: a live, typed view of a stream that can be snapshotted
  (:class:`FileSnapshots`, :class:`SQLiteSnapshots`) and resumed.

Example::

    from pydantic import BaseModel
    from durable_streams.state import Collection, StreamState

    class User(BaseModel):
        id: str
        name: str

    class ChatRoom(StreamState):
        users = Collection(User, type="user", primary_key="id")

    await handle.append(ChatRoom.users.insert(User(id="u1", name="Ada"), txid="t1"))
    async with ChatRoom(handle) as room:
        await room.wait_for_txid("t1")
        print(room.users.get("u1"))
"""

from ._collection import Collection, CollectionView, Transaction, format_timestamp
from ._materialized import MaterializedState, OnInvalid, StateData
from ._messages import (
    ChangeHeaders,
    ChangeMessage,
    ControlHeaders,
    ControlKind,
    ControlMessage,
    InvalidStateMessageError,
    Operation,
    StateError,
    StateMessage,
    parse_message,
)
from ._snapshots import FileSnapshots, Snapshot, SnapshotError, SnapshotStore, SQLiteSnapshots
from ._stream_state import StateBatch, StateClosedError, StreamState, TxidTimeoutError

__all__ = [
    "ChangeHeaders",
    "ChangeMessage",
    "Collection",
    "CollectionView",
    "ControlHeaders",
    "ControlKind",
    "ControlMessage",
    "FileSnapshots",
    "InvalidStateMessageError",
    "MaterializedState",
    "OnInvalid",
    "Operation",
    "SQLiteSnapshots",
    "Snapshot",
    "SnapshotError",
    "SnapshotStore",
    "StateBatch",
    "StateClosedError",
    "StateData",
    "StateError",
    "StateMessage",
    "StreamState",
    "Transaction",
    "TxidTimeoutError",
    "format_timestamp",
    "parse_message",
]
