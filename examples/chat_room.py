"""A chat room on a state stream: a publisher and a live reader.

The room is a State Protocol stream with two collections, ``presence`` (who is
online) and ``messages``. Readers in any language materialize it; TypeScript
apps read it with ``@durable-streams/state``.

``publish`` joins the room as a user, posts messages (each with the presence
update it implies, as one transaction in one request) and waits until its own
live view shows each one before going on. ``read`` follows the room live and
prints a JSON line per server response; with ``--snapshots`` it keeps a
snapshot (state + exact position) in SQLite, so when it restarts it continues
from there instead of replaying the room::

    python examples/chat_room.py publish --user ada --messages 3
    python examples/chat_room.py read --snapshots room.db

Set ``DURABLE_STREAMS_URL`` (default ``http://127.0.0.1:4437``) or pass
``--url`` with a full stream URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone

import anyio
from pydantic import BaseModel

from durable_streams import StreamHandle
from durable_streams.state import (
    Collection,
    SQLiteSnapshots,
    StateBatch,
    StreamState,
    Transaction,
)


class Presence(BaseModel):
    user: str
    online: bool
    last_seen: datetime


class ChatMessage(BaseModel):
    id: str
    user: str
    text: str


class ChatRoom(StreamState):
    """The room's schema, and (as an instance) a live view of it."""

    presence = Collection(Presence, type="presence", primary_key="user")
    messages = Collection(ChatMessage, type="message", primary_key="id")


def default_url() -> str:
    base = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    return f"{base.rstrip('/')}/v1/stream/chat-room-demo"


def now() -> datetime:
    return datetime.now(timezone.utc)


async def publish(url: str, user: str, count: int, close: bool = False) -> list[str]:
    """Post ``count`` messages as ``user``; returns their ids once each is visible."""
    posted: list[str] = []
    async with StreamHandle(url) as handle:
        await handle.create(content_type="application/json")
        async with ChatRoom(handle) as room:  # our own live view of the room
            await handle.append(
                ChatRoom.presence.upsert(Presence(user=user, online=True, last_seen=now()))
            )
            for n in range(count):
                # Ids stay unique while one publisher per user runs: the room only grows.
                message = ChatMessage(
                    id=f"{user}-{len(room.messages)}", user=user, text=f"hello #{n}"
                )
                tx = Transaction()
                tx.insert(ChatRoom.messages, message)
                tx.upsert(ChatRoom.presence, Presence(user=user, online=True, last_seen=now()))
                await handle.append_many(tx.messages)  # one request: all or nothing
                await room.wait_for_txid(tx.txid, timeout=10)
                assert room.messages.get(message.id) == message  # visible once awaited
                print(f"visible {tx.txid} {message.id}", flush=True)
                posted.append(message.id)
            await handle.append(
                ChatRoom.presence.upsert(Presence(user=user, online=False, last_seen=now()))
            )
        if close:
            await handle.close()
    return posted


async def read(url: str, snapshots: str | None) -> None:
    """Follow the room, printing one JSON line when ready and one per response."""

    def emit(event: str, room: ChatRoom, **fields: object) -> None:
        line = {
            "event": event,
            "position": str(room.position),
            "applied": room.applied,
            "online": sorted(key for key, p in room.presence.items() if p.online),
            "messages": len(room.messages),
            **fields,
        }
        print(json.dumps(line), flush=True)

    async with StreamHandle(url) as handle:
        store = SQLiteSnapshots(snapshots) if snapshots else None

        def on_batch(batch: StateBatch) -> None:
            emit("batch", room, txids=list(batch.txids))

        # autosave=0: a snapshot after every response, before its batch line is printed.
        room = ChatRoom(handle, snapshots=store, autosave=0, on_batch=on_batch)
        async with room:
            restored = str(room.restored_from) if room.restored_from else None
            emit("ready", room, restored_from=restored)
            await room.wait_closed()
        emit("closed", room)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=default_url(), help="the room's stream URL")
    commands = parser.add_subparsers(dest="command", required=True)
    publisher = commands.add_parser("publish", help="join as --user and post --messages")
    publisher.add_argument("--user", default="ada")
    publisher.add_argument("--messages", type=int, default=3)
    publisher.add_argument("--close", action="store_true", help="close the room afterwards")
    reader = commands.add_parser("read", help="follow the room live")
    reader.add_argument("--snapshots", help="SQLite file to keep the reader's snapshot in")
    args = parser.parse_args(argv)
    if args.command == "publish":
        anyio.run(publish, args.url, args.user, args.messages, args.close)
    else:
        anyio.run(read, args.url, args.snapshots)


if __name__ == "__main__":
    main(sys.argv[1:])
