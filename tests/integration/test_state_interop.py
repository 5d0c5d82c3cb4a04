"""Interop with the TypeScript package ``@durable-streams/state`` (pinned in
``tests/state_interop/``), both directions, through the reference server.

Python builders write, the package's ``MaterializedState`` materializes the
stream (driven by ``tests/state_interop/driver.mjs``), and Python's state must
be exactly the same; then the package's ``createStateSchema`` builders write and
Python must materialize the same state. Cases cover updates, deletes, upserts,
replays, ``reset``, several types in one stream and unicode keys.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest

from durable_streams import IdempotentProducer, StreamHandle
from durable_streams.state import (
    ChangeMessage,
    Collection,
    ControlMessage,
    MaterializedState,
    StreamState,
    Transaction,
    parse_message,
)

pytestmark = pytest.mark.anyio

DRIVER = Path(__file__).resolve().parents[1] / "state_interop" / "driver.mjs"


class User(pydantic.BaseModel):
    id: str
    name: str
    online: bool = False


class Message(pydantic.BaseModel):
    id: str
    user: str
    text: str


class Room(StreamState):
    users = Collection(User, type="user", primary_key="id")
    messages = Collection(Message, type="message", primary_key="id")


COLLECTIONS = {
    "users": {"type": "user", "primaryKey": "id", "required": ["id", "name"]},
    "messages": {"type": "message", "primaryKey": "id", "required": ["id", "user", "text"]},
}


async def typescript(command: dict[str, Any]) -> Any:
    node = shutil.which("node")
    assert node is not None, "node is needed for the interop tests"
    assert (DRIVER.parent / "node_modules" / "@durable-streams" / "state").is_dir(), (
        "run scripts/dev (it installs tests/state_interop with npm ci)"
    )
    with anyio.fail_after(30):
        done = await anyio.run_process(
            [node, str(DRIVER)], input=json.dumps(command).encode(), check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


async def python_state(url: str) -> dict[str, Any]:
    """What the Python reader materializes: typed (StreamState) and untyped must agree."""
    async with StreamHandle(url) as handle:
        room = Room(handle)
        await room.preload()
        untyped = MaterializedState()
        async with handle.stream(live=False) as res:
            async for item in res.iter_json():
                untyped.apply(item)
    assert room.state.to_data() == untyped.to_data()
    assert room.state.types == untyped.types
    return {"types": room.state.types, "state": room.state.to_data()}


def user(key: str, name: str, online: bool = False) -> User:
    return User(id=key, name=name, online=online)


async def test_python_builders_are_materialized_by_typescript_into_the_same_state(
    stream_url: str,
) -> None:
    users, messages = Room.users, Room.messages
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        await handle.append(
            users.insert(user("ada", "Ada"), txid="t1", timestamp="2025-01-01T00:00:00Z")
        )
        await handle.append(users.insert(user("ключ", "Борис")))  # unicode keys and values
        await handle.append(users.insert(user("🔑", "Emoji", online=True), headers={"from": "py"}))
        tx = Transaction("t2")
        tx.update(users, user("ada", "Ada L.", online=True), old_value=user("ada", "Ada"))
        tx.insert(messages, Message(id="m1", user="ada", text="héllo"))
        tx.upsert(messages, Message(id="m2", user="ключ", text="привет"))
        await handle.append_many(tx.messages)
        await handle.append(users.insert(user("ada", "Ada L.", online=True)))  # a replayed insert
        await handle.append(
            messages.delete(key="m1", old_value=Message(id="m1", user="ada", text="héllo"))
        )
        await handle.append(users.delete(key="nobody"))  # deleting what is not there
        await handle.append(ControlMessage.reset())
        await handle.append_many(
            [
                ControlMessage.snapshot_start(),
                users.upsert(user("ada", "Ada again")),
                users.insert(user("鍵", "Kagi")),
                messages.upsert(Message(id="m2", user="鍵", text="こんにちは")),
                ControlMessage.snapshot_end(),
            ]
        )
        async with IdempotentProducer(handle, "interop", auto_claim=True) as producer:
            producer.append(users.update(user("鍵", "Kagi 2")))
            producer.append(messages.insert(Message(id="m3", user="ada", text="bye")))
            producer.append(users.delete(key="ada"))
            await producer.flush()
    ours = await python_state(stream_url)
    theirs = await typescript({"command": "materialize", "url": stream_url})
    assert theirs["messages"] == 18
    assert {"types": theirs["types"], "state": theirs["state"]} == ours
    assert ours == {
        "types": ["user", "message"],
        "state": {
            "user": {"鍵": {"id": "鍵", "name": "Kagi 2", "online": False}},
            "message": {
                "m2": {"id": "m2", "user": "鍵", "text": "こんにちは"},
                "m3": {"id": "m3", "user": "ada", "text": "bye"},
            },
        },
    }


async def test_typescript_builders_are_materialized_by_python_into_the_same_state(
    stream_url: str,
) -> None:
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")

    def op(collection: str, kind: str, **params: Any) -> dict[str, Any]:
        return {"collection": collection, "op": kind, **params}

    batches = [
        [op("users", "insert", value={"id": "ada", "name": "Ada"}, headers={"txid": "t1"})],
        [
            op("users", "insert", value={"id": "ключ", "name": "Борис"}),
            op("users", "upsert", value={"id": "🔑", "name": "Emoji", "online": True}),
            op("messages", "insert", value={"id": "m1", "user": "ada", "text": "héllo"}),
        ],
        [
            op(
                "users",
                "update",
                value={"id": "ada", "name": "Ada L.", "online": True},
                oldValue={"id": "ada", "name": "Ada"},
                headers={"txid": "t2", "timestamp": "2025-01-01T00:00:00Z"},
            )
        ],
        [op("users", "insert", value={"id": "ada", "name": "Ada L.", "online": True})],  # replay
        [op("messages", "delete", oldValue={"id": "m1", "user": "ada", "text": "héllo"})],
        [op("users", "delete", key="ключ")],
        [{"control": "reset"}],
        [
            {"control": "snapshot-start"},
            op("users", "upsert", value={"id": "鍵", "name": "Kagi"}),
            op("messages", "upsert", value={"id": "m2", "user": "鍵", "text": "こんにちは"}),
            {"control": "snapshot-end"},
        ],
        [op("users", "update", key="鍵", value={"id": "鍵", "name": "Kagi 2", "online": True})],
    ]
    written = await typescript(
        {"command": "write", "url": stream_url, "collections": COLLECTIONS, "batches": batches}
    )
    events = written["events"]
    assert len(events) == 14
    parsed = [parse_message(event) for event in events]  # every TS event is a valid message
    assert sum(isinstance(m, ChangeMessage) for m in parsed) == 11
    ours = await python_state(stream_url)
    theirs = await typescript({"command": "materialize", "url": stream_url})
    assert {"types": theirs["types"], "state": theirs["state"]} == ours
    assert ours["state"] == {
        "user": {"鍵": {"id": "鍵", "name": "Kagi 2", "online": True}},
        "message": {"m2": {"id": "m2", "user": "鍵", "text": "こんにちは"}},
    }


KEYS = ["a", "b", "ключ", "鍵", "🔑", "x y"]


def random_batches(rng: random.Random) -> list[list[ChangeMessage[Any] | ControlMessage]]:
    batches: list[list[ChangeMessage[Any] | ControlMessage]] = []
    for _ in range(rng.randint(5, 25)):
        batch: list[ChangeMessage[Any] | ControlMessage] = []
        for _ in range(rng.randint(1, 4)):
            roll = rng.random()
            key = rng.choice(KEYS)
            if roll < 0.03:
                batch.append(ControlMessage.reset())
            elif roll < 0.5:
                kind = rng.choice(["insert", "update", "upsert"])
                value = user(key, f"n{rng.randint(0, 99)}", rng.random() < 0.5)
                batch.append(getattr(Room.users, kind)(value, txid=f"t{rng.randint(0, 5)}"))
            elif roll < 0.75:
                text = rng.choice(["hi", "héllo", "こんにちは", ""])
                batch.append(Room.messages.upsert(Message(id=key, user="a", text=text)))
            elif rng.random() < 0.5:
                batch.append(Room.users.delete(key=key))
            else:
                batch.append(Room.messages.delete(key=key))
        batches.append(batch)
    return batches


@pytest.mark.parametrize("seed", range(6))
async def test_random_python_streams_materialize_alike_in_typescript(
    stream_url: str, seed: int
) -> None:
    batches = random_batches(random.Random(seed))
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        for batch in batches:
            await handle.append_many(batch)
    ours = await python_state(stream_url)
    theirs = await typescript({"command": "materialize", "url": stream_url})
    assert theirs["messages"] == sum(len(batch) for batch in batches)
    assert {"types": theirs["types"], "state": theirs["state"]} == ours
