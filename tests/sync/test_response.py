"""The sync StreamResponse's iterators, against the in-memory test server (in-process client)."""

from __future__ import annotations

import threading

import httpx

from durable_streams.sync import StreamHandle
from durable_streams.sync._portal import run_sync

JSON = "application/json"


def test_closing_a_response_mid_iteration_ends_it_and_keeps_what_was_received(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        handle.append_many([{"n": n} for n in range(100)])
        res = handle.stream()
        items = res.iter_json()
        assert [next(items)["n"] for _ in range(3)] == [0, 1, 2]
        received = res.position  # the pump has read ahead; this is what we got
        res.close()
        assert next(items, None) is None  # over, not an error
        assert res.position == received
        with handle.stream(offset=received) as rest:
            assert next(rest.iter_json())["n"] == 3


def test_an_iterator_closed_on_the_loop_thread_does_not_block_the_loop(
    ds_client: httpx.AsyncClient, ds_stream_url: str
) -> None:
    with StreamHandle(ds_stream_url, client=ds_client) as handle:
        handle.create(content_type=JSON)
        with handle.stream(live="long-poll") as res:
            items = res.iter_json()
            handle.append({"n": 0})
            assert next(items) == {"n": 0}
            closer = threading.Thread(target=run_sync, args=(items.close,))
            closer.start()
            closer.join(timeout=5)  # a bound on a hang (STOP_TIMEOUT is 10 s)
            assert not closer.is_alive()
        assert handle.head().content_type == JSON
