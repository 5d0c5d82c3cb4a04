"""The live state view against the reference server.

A writer process and a reader process (both ``examples/chat_room.py``):
``wait_for_txid`` returns only once the change is visible, and the reader,
SIGKILLed and restarted, continues from its persisted snapshot without
replaying the stream. In-process: a snapshot taken in the middle of one
server response resumes exactly, and waits time out or fail typed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pydantic
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from durable_streams import Position, StreamHandle
from durable_streams.state import (
    Collection,
    MaterializedState,
    Snapshot,
    StateClosedError,
    StreamState,
    Transaction,
    TxidTimeoutError,
)

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat_room.py"
REPO = EXAMPLE.parents[1]


@asynccontextmanager
async def running(command: list[str]) -> AsyncIterator[Process]:
    """A child process, SIGKILLed on the way out if it still runs (a failed assertion
    must not leave a live reader behind, nor wait for it)."""
    process = await anyio.open_process(command, env=child_env())
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()


class Lines:
    """JSON (or text) lines printed by a child process, read with a deadline each."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self.process = process
        self.reader = BufferedByteReceiveStream(process.stdout)

    async def next(self) -> str:
        with anyio.fail_after(30):
            return (await self.reader.receive_until(b"\n", 1 << 20)).decode()

    async def until(self, wanted: str, **fields: Any) -> dict[str, Any]:
        while True:
            line = json.loads(await self.next())
            if line["event"] == wanted and all(line.get(k) == v for k, v in fields.items()):
                return dict(line)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


async def publish(url: str, user: str, count: int, *extra: str) -> list[str]:
    done = await anyio.run_process(
        [
            sys.executable,
            str(EXAMPLE),
            "--url",
            url,
            "publish",
            "--user",
            user,
            "--messages",
            str(count),
            *extra,
        ],
        env=child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


async def full_replay(url: str) -> dict[str, Any]:
    state = MaterializedState()
    async with StreamHandle(url) as handle, handle.stream(live=False) as res:
        async for item in res.iter_json():
            state.apply(item)
    return state.to_data()


async def test_writer_and_reader_processes_and_a_reader_restart(
    stream_url: str, tmp_path: Path
) -> None:
    snapshots = tmp_path / "reader.db"
    reader_command = [sys.executable, str(EXAMPLE), "--url", stream_url, "read",
                      "--snapshots", str(snapshots)]  # fmt: skip
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")

    # The writer waits for each transaction on its own live view, then checks it is there.
    first = await publish(stream_url, "ada", 4)
    assert [line.split()[0] for line in first] == ["visible"] * 4
    last_txid = first[-1].split()[1]

    async with running(reader_command) as reader:
        lines = Lines(reader)
        ready = await lines.until("ready")
        assert ready["restored_from"] is None
        assert ready["messages"] == 4
        # A change made while the reader follows shows up in it live.
        more = await publish(stream_url, "ada", 1)
        txid = more[0].split()[1]
        seen = await lines.until("batch")
        while txid not in seen["txids"]:
            seen = await lines.until("batch")
        assert seen["messages"] == 5
        killed_at = seen["applied"]
        reader.send_signal(signal.SIGKILL)  # the snapshot was saved before the line was printed
        await reader.wait()
    assert last_txid != txid

    await publish(stream_url, "bob", 3)  # while no reader runs
    # The stream now ends with bob's presence going offline; count what came after the kill.
    expected = await full_replay(stream_url)
    async with StreamHandle(stream_url) as handle, handle.stream(live=False) as res:
        total = len([item async for item in res.iter_json()])

    async with running(reader_command) as reader:
        lines = Lines(reader)
        ready = await lines.until("ready")
        assert ready["restored_from"] is not None
        assert ready["messages"] == 8
        assert ready["online"] == []  # ada and bob both went offline
        assert ready["applied"] == total - killed_at - 1  # only what followed the snapshot
        async with StreamHandle(stream_url) as handle:
            await handle.close()
        closed = await lines.until("closed")
        assert closed["messages"] == 8
        await reader.wait()
        assert reader.returncode == 0
    restored = await StreamState_from(snapshots, stream_url)
    assert restored == expected


async def StreamState_from(snapshots: Path, url: str) -> dict[str, Any]:
    """The state the reader's last snapshot holds."""
    from durable_streams.state import SQLiteSnapshots

    snapshot = await SQLiteSnapshots(snapshots).load(url)
    assert snapshot is not None
    return {type_: dict(entities) for type_, entities in snapshot.data.items()}


class Item(pydantic.BaseModel):
    id: str
    n: int


class Items(StreamState):
    items = Collection(Item, type="item", primary_key="id")


async def test_a_snapshot_taken_mid_response_resumes_exactly(stream_url: str) -> None:
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        await handle.append_many([Items.items.upsert(Item(id=f"k{i % 7}", n=i)) for i in range(50)])
        taken: list[Snapshot] = []

        def on_event(message: object) -> None:
            if len(taken) < 1 and view.applied == 20:
                taken.append(view.snapshot())

        view = Items(handle, on_event=on_event)
        await view.preload()  # the reference server answers with one response of 50
        snapshot = taken[0]
        assert snapshot.position.skip == 20  # in the middle of that response

        class Store:
            async def load(self, name: str) -> Snapshot | None:
                return snapshot

            async def save(self, name: str, saved: Snapshot) -> None:
                pass

        resumed = Items(handle, snapshots=Store())
        await resumed.preload()
        assert resumed.applied == 30
        assert resumed.state.to_data() == view.state.to_data()
        assert resumed.items.get("k0") == Item(id="k0", n=49)
        assert len(resumed.items) == 7
        assert resumed.position == view.position


async def test_wait_for_txid_waits_for_visibility_and_fails_typed(stream_url: str) -> None:
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        async with Items(handle) as view:
            with pytest.raises(TxidTimeoutError):
                await view.wait_for_txid("never", timeout=0.2)
            tx = Transaction()
            tx.insert(Items.items, Item(id="a", n=1))
            tx.insert(Items.items, Item(id="b", n=2))
            async with anyio.create_task_group() as tasks:
                visible: list[bool] = []

                async def wait() -> None:
                    await view.wait_for_txid(tx.txid, timeout=10)
                    visible.append("a" in view.items and "b" in view.items)

                tasks.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                assert visible == []  # not before the change is written
                await handle.append_many(tx.messages)
            assert visible == [True]
            await view.wait_for_txid(tx.txid)  # already seen: at once
            waiting = anyio.Event()

            async def wait_then_fail() -> None:
                waiting.set()
                with pytest.raises(StateClosedError):
                    await view.wait_for_txid("after-close", timeout=10)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait_then_fail)
                await waiting.wait()
                await handle.close()  # the view reads to EOF: waiting can only fail
            await view.wait_closed()
            assert view.closed
        assert view.position == Position(view.position.offset)
