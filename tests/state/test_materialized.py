"""MaterializedState: applying, replays, reset, per-type validation, and the
properties the State Protocol promises (hypothesis)."""

from __future__ import annotations

from typing import Any

import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_streams import Position
from durable_streams.state import (
    Collection,
    InvalidStateMessageError,
    MaterializedState,
    Snapshot,
    parse_message,
)
from tests.state.strategies import STREAMS, changes


class User(pydantic.BaseModel):
    id: str
    name: str


users = Collection(User, type="user", primary_key="id")


def change(op: str, type_: str, key: str, value: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": type_, "key": key, "headers": {"operation": op}}
    if op != "delete":
        message["value"] = value
    return message


def test_changes_replays_and_reset() -> None:
    state = MaterializedState()
    stream = [
        change("insert", "user", "u1", {"n": 1}),
        change("insert", "user", "u1", {"n": 2}),  # a replayed insert acts as an update
        change("upsert", "room", "r1", ["a"]),
        change("delete", "room", "r1"),
        change("delete", "ghost", "g1"),  # names its type, as in the TypeScript package
    ]
    assert state.apply_many(stream) == 5
    assert state.get("user", "u1") == {"n": 2}
    assert state.get("room", "r1") is None
    assert state.types == ["user", "room", "ghost"]
    assert state.type_count == 3
    assert len(state) == 1
    assert dict(state.get_type("user")) == {"u1": {"n": 2}}
    state.apply({"headers": {"control": "snapshot-start"}})
    assert len(state) == 1
    state.apply({"headers": {"control": "reset"}})
    assert state.types == []
    assert state.get_type("user") == {}


def test_an_invalid_value_is_reported_and_blocks_no_other_type() -> None:
    reported: list[InvalidStateMessageError] = []
    state = MaterializedState([users], on_invalid=reported.append)
    state.apply(change("insert", "user", "u1", {"id": "u1", "name": "Ada"}))
    bad = change("update", "user", "u1", {"id": "u1"})  # no name
    assert not state.apply(bad, position=Position("0000000000000000_0000000000000007", 2))
    state.apply(change("insert", "note", "n1", "anything"))  # untyped types go on
    state.apply({"headers": {"operation": "insert"}})
    assert state.get("user", "u1") == User(id="u1", name="Ada")
    assert state.get("note", "n1") == "anything"
    assert [error.entity_type for error in reported] == ["user", None]
    assert reported[0].raw == bad
    assert reported[0].position == Position("0000000000000000_0000000000000007", 2)


def test_typed_state_round_trips_through_data() -> None:
    state = MaterializedState([users])
    state.apply(users.insert(User(id="u1", name="Ada")))
    state.apply(change("upsert", "other", "k", [1, 2]))
    restored = MaterializedState([users])
    restored.load_data(Snapshot.from_json(Snapshot(Position("-1"), state.to_data()).to_json()).data)
    assert restored.get("user", "u1") == User(id="u1", name="Ada")
    assert (
        restored.to_data()
        == state.to_data()
        == {
            "user": {"u1": {"id": "u1", "name": "Ada"}},
            "other": {"k": [1, 2]},
        }
    )


def materialize(messages: list[Any]) -> MaterializedState:
    state = MaterializedState(on_invalid=lambda error: None)
    for message in messages:
        state.apply(message)
    return state


@settings(max_examples=300, deadline=None)
@given(stream=STREAMS, data=st.data())
def test_a_snapshot_plus_the_rest_equals_the_whole_stream(stream: list[Any], data: Any) -> None:
    cut = data.draw(st.integers(0, len(stream)))
    whole = materialize(stream)
    before = materialize(stream[:cut])
    snapshot = Snapshot.from_json(Snapshot(Position("-1", cut), before.to_data()).to_json())
    resumed = MaterializedState(on_invalid=lambda error: None)
    resumed.load_data(snapshot.data)
    for message in stream[cut:]:
        resumed.apply(message)
    assert resumed.to_data() == whole.to_data()
    assert resumed.types == whole.types


@settings(max_examples=300, deadline=None)
@given(stream=STREAMS, data=st.data())
def test_any_chunking_gives_the_same_state(stream: list[Any], data: Any) -> None:
    sizes = data.draw(st.lists(st.integers(1, 5), max_size=len(stream)))
    chunked = MaterializedState(on_invalid=lambda error: None)
    rest = list(stream)
    for size in sizes:
        chunked.apply_many(rest[:size])
        rest = rest[size:]
    chunked.apply_many(rest)
    assert chunked.to_data() == materialize(stream).to_data()


@settings(max_examples=300, deadline=None)
@given(stream=STREAMS)
def test_replaying_the_stream_twice_ends_in_the_same_state(stream: list[Any]) -> None:
    once = materialize(stream)
    twice = materialize([*stream, *stream]) if any(_is_reset(m) for m in stream) else None
    # Without a reset, a replay re-applies every change on top: the same final state.
    replayed = materialize(stream)
    replayed.apply_many(stream)
    assert replayed.to_data() == once.to_data()
    if twice is not None:
        assert twice.to_data() == once.to_data()


def _is_reset(message: Any) -> bool:
    return isinstance(message, dict) and message.get("headers") == {"control": "reset"}


@settings(max_examples=500, deadline=None)
@given(message=st.one_of(changes(), STREAMS.map(lambda s: s[0] if s else {})))
def test_the_fast_path_accepts_exactly_what_the_models_accept(message: Any) -> None:
    try:
        parse_message(message)
        valid = True
    except InvalidStateMessageError:
        valid = False
    assert MaterializedState(on_invalid=lambda error: None).apply(message) is valid
