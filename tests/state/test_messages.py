"""Change and control messages: parsing tells them apart, keeps unknown headers,
and reports invalid messages with where they were read."""

from __future__ import annotations

import pydantic_core
import pytest

from durable_streams import Position, ValidationError
from durable_streams.state import (
    ChangeMessage,
    ControlMessage,
    InvalidStateMessageError,
    StateError,
    parse_message,
)


def test_a_change_keeps_the_optional_and_unknown_headers() -> None:
    raw = {
        "type": "user",
        "key": "u1",
        "value": {"name": "Ada"},
        "old_value": {"name": "A"},
        "headers": {
            "operation": "update",
            "txid": "t1",
            "timestamp": "2025-01-02T03:04:05Z",
            "from": "writer-1",
            "offset": "0000000000000000_0000000000000042",
            "x-trace": "abc",
        },
        "extra": [1],
    }
    message = parse_message(raw)
    assert isinstance(message, ChangeMessage)
    assert message.operation == "update"
    assert message.txid == "t1"
    assert message.headers.from_ == "writer-1"
    assert message.to_json() == raw  # carried through unchanged, "from" included


def test_a_control_message_is_told_from_a_change() -> None:
    message = parse_message({"headers": {"control": "reset", "offset": "5"}})
    assert isinstance(message, ControlMessage)
    assert message.control == "reset"
    assert message.headers.offset == "5"
    assert ControlMessage.snapshot_start().to_json() == {"headers": {"control": "snapshot-start"}}


def test_a_delete_needs_no_value_but_an_insert_does() -> None:
    delete = parse_message({"type": "user", "key": "u1", "headers": {"operation": "delete"}})
    assert isinstance(delete, ChangeMessage)
    assert "value" not in delete.to_json()
    null_insert = parse_message(
        {"type": "user", "key": "u1", "value": None, "headers": {"operation": "insert"}}
    )
    assert null_insert.to_json()["value"] is None  # a JSON null is a value
    with pytest.raises(InvalidStateMessageError, match="insert changes need a value"):
        parse_message({"type": "user", "key": "u1", "headers": {"operation": "insert"}})


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "user", "key": "u1", "value": 1},
        {"headers": {}},
        {"headers": {"operation": "merge"}, "type": "user", "key": "u1", "value": 1},
        {"headers": {"control": "rewind"}},
        {"headers": {"operation": "insert"}, "type": "", "key": "u1", "value": 1},
        {"headers": {"operation": "insert"}, "type": "user", "key": 3, "value": 1},
        {"headers": {"operation": "insert", "txid": ""}, "type": "user", "key": "k", "value": 1},
        ["not", "an", "object"],
    ],
)
def test_invalid_messages_are_reported_with_their_position(raw: object) -> None:
    where = Position("0000000000000000_0000000000000042", 3)
    with pytest.raises(InvalidStateMessageError) as caught:
        parse_message(raw, position=where)
    error = caught.value
    assert isinstance(error, ValidationError)  # the core's error tree
    assert isinstance(error, StateError)
    assert error.position == where
    assert error.offset == where.offset
    assert error.raw == raw
    assert str(where) in str(error)


def test_models_serialise_for_appends_without_nulls() -> None:
    change = parse_message(
        {"type": "t", "key": "k", "value": 1, "headers": {"operation": "upsert"}}
    )
    # handle.append serialises pydantic models with pydantic_core.to_json.
    assert pydantic_core.to_json(change) == (
        b'{"type":"t","key":"k","value":1,"headers":{"operation":"upsert"}}'
    )
