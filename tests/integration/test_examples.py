"""The examples run against the reference server and do what they print.

``examples/quickstart.py`` resumes a live read with no gap and no duplicate;
``examples/event_producer.py`` stores every event it produced, stops cleanly, and
is safe to restart on the same stream; ``examples/resumable_worker.py`` bills
each order once across runs; two ``examples/wake_worker.py`` services share one
subscription and index every chat message once.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import uuid
from functools import partial
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_quickstart_resumes_without_gap_or_duplicate(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DURABLE_STREAMS_URL", server_url)
    example = load_example("quickstart")
    with anyio.fail_after(20):
        await example.main()
    lines = capsys.readouterr().out.splitlines()
    steps = [line.split()[0] for line in lines]
    for step in ("create", "append", "head", "read", "live", "resume", "close", "check"):
        assert step in steps
    assert "connection lost (simulated)" in "\n".join(lines)
    assert lines[-1] == "check   -> received 6 of 6 messages: no gap, no duplicate"


async def stored_ticks(url: str) -> list[int]:
    """Every stored event's ``n``, read to the tail however many responses the server uses."""
    ticks: list[int] = []
    offset = "-1"
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(url, params={"offset": offset})
            ticks += [event["n"] for event in json.loads(response.content)]
            offset = response.headers["stream-next-offset"]
            if "stream-up-to-date" in response.headers:
                return ticks


async def test_the_example_stores_every_event_it_produced(stream_url: str) -> None:
    example = load_example("event_producer")
    with anyio.fail_after(20):
        sent = await example.run_service(stream_url, stop=anyio.Event(), max_events=300)
    assert sent == 300
    assert await stored_ticks(stream_url) == list(range(300))


async def test_the_example_is_safe_to_restart_on_one_stream(stream_url: str) -> None:
    example = load_example("event_producer")
    for _ in range(2):  # a restarted service: same producer id, same stream
        with anyio.fail_after(20):
            sent = await example.run_service(stream_url, stop=anyio.Event(), max_events=300)
        assert sent == 300
    assert await stored_ticks(stream_url) == list(range(300)) * 2  # both runs, each once


async def test_stopping_the_example_flushes_what_is_pending(stream_url: str) -> None:
    example = load_example("event_producer")
    stop = anyio.Event()
    sent = 0

    async def serve() -> None:
        nonlocal sent
        sent = await example.run_service(stream_url, stop=stop)

    async with httpx.AsyncClient() as client:
        created = await client.put(stream_url, headers={"content-type": "application/json"})
        assert created.status_code == 201
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(serve)
                await _wait_for_data(client, stream_url)  # the service is producing
                stop.set()
    assert sent > 0
    assert await stored_ticks(stream_url) == list(range(sent))


async def _wait_for_data(client: httpx.AsyncClient, url: str) -> None:
    """Long-poll from the tail until an append arrives (the server wakes us)."""
    offset = "now"
    while True:
        response = await client.get(url, params={"live": "long-poll", "offset": offset})
        if response.status_code == 200 and response.content not in (b"", b"[]"):
            return
        offset = response.headers["stream-next-offset"]


async def test_the_resumable_worker_bills_each_order_once(
    stream_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example("resumable_worker")
    db_path = tmp_path / "billing.db"
    with anyio.fail_after(30):
        await example.ensure_orders(stream_url, 250)
        assert await example.run_worker(stream_url, db_path, live=False) == 250
        assert await example.run_worker(stream_url, db_path, live=False) == 0  # resumed at the end
        async with httpx.AsyncClient() as client:
            more = [{"id": n, "cents": 1} for n in range(250, 260)]
            assert (await client.post(stream_url, json=more)).status_code == 204
        assert await example.run_worker(stream_url, db_path, live=False) == 10
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT order_id FROM bills ORDER BY order_id").fetchall()
    db.close()
    assert [order_id for (order_id,) in rows] == list(range(260))
    assert "done: billed 10 orders this run" in capsys.readouterr().out


@pytest.mark.subscriptions
async def test_two_wake_workers_index_every_message_once(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example("wake_worker")
    root = f"{server_url}/v1/stream"
    prefix = f"example-{uuid.uuid4().hex[:8]}"
    texts = {f"{prefix}/chats/{chat}": [f"hello {chat} {n}" for n in range(5)] for chat in "abc"}
    expected = sum(len(messages) for messages in texts.values())
    stop, all_indexed, both_ready = anyio.Event(), anyio.Event(), anyio.Event()
    index = example.WordIndex()  # shared by both workers, as a database would be
    ready: list[bool] = []

    def on_ready() -> None:
        ready.append(True)
        if len(ready) == 2:
            both_ready.set()

    def on_indexed() -> None:
        if index.messages >= expected:
            all_indexed.set()

    options = {
        "subscription_id": f"{prefix}-indexer",
        "pattern": f"{prefix}/chats/*",
        "wake_stream": f"{prefix}/wakes",
        "lease_ttl_ms": 5000,
        "stop": stop,
        "index": index,
        "on_ready": on_ready,
        "on_indexed": on_indexed,
    }
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(example.run_service, root, **options))
            tg.start_soon(partial(example.run_service, root, **options))
            await both_ready.wait()  # the subscription exists: new chats are linked
            async with httpx.AsyncClient() as client:
                for url_path, messages in texts.items():
                    url = f"{root}/{url_path}"
                    put = await client.put(url, headers={"content-type": "application/json"})
                    assert put.status_code == 201
                    for text in messages:
                        posted = await client.post(url, json=[{"user": "ada", "text": text}])
                        assert posted.status_code == 204
            await all_indexed.wait()
            stop.set()
    assert index.messages == expected  # each once: no failure, so no message is seen again
    assert "created" in capsys.readouterr().out
    for url_path in texts:
        chat = url_path.rsplit("/", 1)[1]
        assert index.words[url_path]["hello"] == 5
        assert index.words[url_path][chat] == 5
