"""Scenario 9: materializing a State Protocol stream against a plain ``iter_json()`` read.

The stream holds ``catchup_messages`` change messages (200,000 in a full run):
inserts and updates of 10,000 users. It is read from the start to the tail by a
:class:`~durable_streams.state.StreamState` with one typed collection (each value
validated by pydantic), by an untyped :class:`~durable_streams.state.MaterializedState`
fed from ``iter_json()``, and by a plain ``iter_json()`` loop. The "raw" column
is the plain SDK read: the ratios are what materializing costs on top of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from durable_streams import StreamHandle
from durable_streams.state import Collection, MaterializedState, StreamState

from ._harness import JSON_TYPE, Bench, Row, interleaved, median, raw_client
from ._reads import batches, fill_stream

USERS = 10_000


class User(BaseModel):
    id: str
    name: str
    visits: int


class Users(StreamState):
    users = Collection(User, type="user", primary_key="id")


def change_messages(count: int) -> list[bytes]:
    """``count`` pre-serialised changes: each user inserted once, then updated."""
    messages = []
    for n in range(count):
        key = f"u{n % USERS}"
        operation = "insert" if n < USERS else "update"
        value = {"id": key, "name": f"user {n % USERS}", "visits": n // USERS}
        message = {"type": "user", "key": key, "value": value, "headers": {"operation": operation}}
        messages.append(json.dumps(message, separators=(",", ":")).encode())
    return messages


async def state_materialize(bench: Bench) -> list[Row]:
    """9. StreamState / MaterializedState catch-up vs plain iter_json()."""
    count = bench.sizes.catchup_messages
    url = bench.new_url("state")
    rounds = max(3, bench.sizes.catchup_rounds)
    async with raw_client() as client, StreamHandle(url) as handle:
        await fill_stream(client, url, JSON_TYPE, batches(change_messages(count)))

        def timed(read: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                start = time.perf_counter()
                seen = await read()
                elapsed = time.perf_counter() - start
                if seen != count:
                    raise RuntimeError(f"read {seen} messages, expected {count}")
                return elapsed

            return run

        async def typed_view() -> int:
            view = Users(handle, live="long-poll", autosave=None)  # preload() only catches up
            await view.preload()
            if len(view.users) != min(count, USERS):
                raise RuntimeError(f"materialized {len(view.users)} users")
            applied = view.applied
            await view.aclose()
            return applied

        async def untyped_state() -> int:
            state = MaterializedState()
            seen = 0
            async with handle.stream(offset="-1", live=False) as response:
                async for item in response.iter_json():
                    state.apply(item)
                    seen += 1
            return seen

        async def plain_read() -> int:
            seen = 0
            async with handle.stream(offset="-1", live=False) as response:
                async for _item in response.iter_json():
                    seen += 1
            return seen

        typed, untyped, plain = timed(typed_view), timed(untyped_state), timed(plain_read)
        await typed()  # warm-up
        await untyped()
        await plain()
        typed_times, plain_times = await interleaved(rounds, typed, plain)
        untyped_times, plain_times_2 = await interleaved(rounds, untyped, plain)
        await client.delete(url)
    plain_s = median(plain_times + plain_times_2)
    note = "raw column = plain SDK iter_json() of the same stream"
    return [
        Row(
            f"9 state, StreamState typed ({count:,} changes)",
            "messages/s",
            "msg/s",
            count / median(typed_times),
            count / plain_s,
            note=note,
        ),
        Row(
            f"9 state, MaterializedState untyped ({count:,} changes)",
            "messages/s",
            "msg/s",
            count / median(untyped_times),
            count / plain_s,
            note=note,
        ),
    ]
