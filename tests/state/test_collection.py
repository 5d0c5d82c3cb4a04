"""Collections: builders fill type, key and headers and validate values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from durable_streams import InvalidArgumentError
from durable_streams.state import Collection, ControlMessage, Transaction, format_timestamp


class User(pydantic.BaseModel):
    id: str
    name: str


class Counter(pydantic.BaseModel):
    n: int
    label: str = ""


users = Collection(User, type="user", primary_key="id")
counters = Collection(Counter, type="counter", primary_key="n")


def test_builders_derive_the_key_and_fill_the_headers() -> None:
    when = datetime(2025, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    insert = users.insert({"id": "ключ", "name": "Ada"}, txid="t1", timestamp=when)
    assert insert.to_json() == {
        "type": "user",
        "key": "ключ",
        "value": {"id": "ключ", "name": "Ada"},
        "headers": {"operation": "insert", "txid": "t1", "timestamp": "2025-01-02T03:04:05Z"},
    }
    update = users.update(User(id="u1", name="B"), old_value=User(id="u1", name="A"))
    assert update.to_json()["old_value"] == {"id": "u1", "name": "A"}
    assert users.upsert(User(id="u1", name="B"), key="other").key == "other"
    assert users.delete(key="u1").to_json() == {
        "type": "user",
        "key": "u1",
        "headers": {"operation": "delete"},
    }
    assert users.delete(old_value={"id": "u2", "name": "x"}).key == "u2"
    assert counters.insert(Counter(n=7)).key == "7"  # an int key as JavaScript's String() has it


def test_builders_refuse_what_readers_could_not_use() -> None:
    with pytest.raises(InvalidArgumentError, match="does not validate"):
        users.insert({"id": "u1"})
    with pytest.raises(InvalidArgumentError, match="key"):
        users.insert({"id": "", "name": "x"})
    with pytest.raises(InvalidArgumentError, match="key= or old_value="):
        users.delete()
    with pytest.raises(InvalidArgumentError, match="operation"):
        users.insert({"id": "u1", "name": "x"}, headers={"operation": "delete"})
    with pytest.raises(InvalidArgumentError, match="headers"):
        users.insert({"id": "u1", "name": "x"}, txid="")
    with pytest.raises(InvalidArgumentError, match="aware"):
        format_timestamp(datetime(2025, 1, 1))  # naive


def test_a_transaction_shares_one_txid() -> None:
    tx = Transaction("tx-1")
    tx.upsert(users, User(id="u1", name="Ada"))
    tx.insert(counters, {"n": 1})
    tx.delete(users, key="u0")
    tx.add([ControlMessage.snapshot_end()])
    changes = tx.messages
    assert len(tx) == 4
    assert [m.to_json()["headers"].get("txid") for m in changes] == ["tx-1"] * 3 + [None]
    assert len(Transaction().txid) == 32  # a fresh id when none is given
