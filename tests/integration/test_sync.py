"""The sync API against the reference server: what sync users rely on.

CRUD, catch-up, a live read ended by a deadline, one producer fed by 8 threads,
and Ctrl-C during a live read (a real subprocess sent SIGINT).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from durable_streams import (
    NotFoundError,
    Position,
    RequestTimeoutError,
    StreamClosedError,
)
from durable_streams.sync import IdempotentProducer, StreamHandle, fail_after
from tests.interrupt import interrupt_when_ready
from tests.server.harness import ReferenceServer

JSON = "application/json"


def test_crud(stream_url: str) -> None:
    with StreamHandle(stream_url) as handle:
        assert not handle.exists()
        with pytest.raises(NotFoundError):
            handle.head()
        created = handle.create(content_type=JSON, ttl=3600)
        assert created.created
        assert handle.create(content_type=JSON, ttl=3600).created is False  # idempotent
        first = handle.append({"n": 1})
        handle.append_many([{"n": 2}, {"n": 3}])
        info = handle.head()
        assert info.content_type == JSON
        assert info.next_offset is not None
        assert first.next_offset is not None
        assert info.next_offset > first.next_offset
        assert info.ttl == 3600
        closed = handle.close(final={"n": 4})
        assert closed.final_offset == handle.head().next_offset
        assert handle.head().closed
        with pytest.raises(StreamClosedError):
            handle.append({"n": 5})
        handle.delete()
        assert not handle.exists()


def test_catch_up_reads(stream_url: str) -> None:
    with StreamHandle(stream_url) as handle:
        handle.create(content_type=JSON)
        for n in range(3):
            handle.append_many([{"n": 2 * n}, {"n": 2 * n + 1}])
        with handle.stream(offset="-1") as res:
            batches = list(res)
        assert [item["n"] for batch in batches for item in batch.items] == list(range(6))
        assert res.up_to_date
        assert res.offset == handle.head().next_offset

        # Items one by one; the position after the third resumes at the fourth.
        with handle.stream() as res:
            items = res.iter_json()
            taken = [next(items)["n"] for _ in range(3)]
            saved = str(res.position)
        assert taken == [0, 1, 2]
        with handle.stream(offset=Position.parse(saved)) as res:
            assert [item["n"] for item in res.iter_json()] == [3, 4, 5]

        assert handle.stream().json() == [{"n": n} for n in range(6)]
        assert json.loads(handle.stream().body()) == [{"n": n} for n in range(6)]


def test_catch_up_of_a_text_stream(stream_url: str) -> None:
    with StreamHandle(stream_url) as handle:
        handle.create(content_type="text/plain")
        handle.append("héllo ")
        handle.append("wörld")
        assert handle.stream().text() == "héllo wörld"
        with handle.stream() as res:
            assert b"".join(res.iter_bytes()) == "héllo wörld".encode()
        with handle.stream() as res:
            assert "".join(res.iter_text()) == "héllo wörld"


def test_live_read_until_a_deadline_then_resume(stream_url: str) -> None:
    with StreamHandle(stream_url) as handle:
        handle.create(content_type=JSON)
        res = handle.stream(offset="now", live="long-poll")
        # A writer in another thread: the read is open, so whatever it appends arrives.
        writer = threading.Thread(target=lambda: handle.append_many([{"n": 1}, {"n": 2}]))
        writer.start()
        items = res.iter_json()
        assert [next(items)["n"], next(items)["n"]] == [1, 2]
        writer.join()
        # Nothing more comes: the deadline ends the live read (its long-polls go on).
        with pytest.raises(RequestTimeoutError), fail_after(0.5):
            next(items)
        assert next(items, None) is None  # the read is over
        resume = res.position
        res.close()
        handle.append({"n": 3})
        handle.close()
        with handle.stream(offset=resume, live="long-poll") as res:
            assert [item["n"] for item in res.iter_json()] == [3]  # then EOF
            assert res.closed


def test_a_deadline_cancels_a_request_under_way(stream_url: str, faults: ReferenceServer) -> None:
    with StreamHandle(stream_url) as handle:
        handle.create(content_type=JSON)
        faults.inject_fault(stream_url, method="HEAD", delayMs=20_000)
        with pytest.raises(RequestTimeoutError), fail_after(0.3):
            handle.head()
        faults.clear_faults()
        assert handle.head().content_type == JSON  # the loop and the handle still work


def test_one_handle_shared_by_a_thread_pool(stream_url: str) -> None:
    with StreamHandle(stream_url) as handle:
        handle.create(content_type=JSON)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda n: handle.append({"n": n}), range(40)))
        assert sorted(item["n"] for item in handle.stream().json()) == list(range(40))


@pytest.mark.slow
def test_producer_fed_by_8_threads_writes_each_message_exactly_once(stream_url: str) -> None:
    threads, per_thread = 8, 10_000
    with StreamHandle(stream_url) as handle:
        handle.create(content_type=JSON)
        with IdempotentProducer(handle, "sync-threads") as producer:

            def feed(thread: int) -> None:
                for n in range(per_thread):
                    producer.append({"t": thread, "n": n})

            workers = [threading.Thread(target=feed, args=(t,)) for t in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            producer.flush()
            assert producer.stats.failed_batches == 0
        with handle.stream() as res:
            items = list(res.iter_json())
    counts = Counter((item["t"], item["n"]) for item in items)
    assert len(items) == threads * per_thread
    assert set(counts.values()) == {1}
    for thread in range(threads):  # each thread's appends keep their order
        mine = [item["n"] for item in items if item["t"] == thread]
        assert mine == list(range(per_thread))


CTRL_C_CHILD = textwrap.dedent(
    """
    import sys, threading
    from durable_streams.sync import StreamHandle

    def say_reading_once_waiting(main):
        # "reading" only once the main thread waits inside the read, so that the
        # parent's SIGINT cannot land before the read (or the try) began.
        while True:
            frame = sys._current_frames().get(main)
            while frame is not None:
                code = frame.f_code
                if code.co_name == "next" and code.co_filename.endswith("_response.py"):
                    print("reading", flush=True)
                    return
                frame = frame.f_back
            threading.Event().wait(0.005)  # polling another thread's stack: no event to wait on

    with StreamHandle(sys.argv[1]) as handle:
        handle.create(content_type="application/json")
        res = handle.stream(offset="now", live="long-poll")
        items = res.iter_json()
        threading.Thread(
            target=say_reading_once_waiting, args=(threading.get_ident(),), daemon=True
        ).start()
        try:
            for item in items:
                print("unexpected", item, flush=True)
        except KeyboardInterrupt:
            # The read was stopped, not abandoned: the iterator is finished at once.
            print("interrupted", next(items, "finished"), flush=True)
        print("head", handle.head().content_type, flush=True)
    """
)


def test_ctrl_c_during_a_live_read_stops_it(stream_url: str) -> None:
    done = interrupt_when_ready(CTRL_C_CHILD, stream_url, ready="reading")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["interrupted finished", "head application/json"]


EXIT_CHILD = textwrap.dedent(
    """
    import sys
    from durable_streams.sync import IdempotentProducer, StreamHandle

    handle = StreamHandle(sys.argv[1])
    handle.create(content_type="application/json")
    # Started, fed, never flushed or closed: the interpreter exits with the
    # messages still queued (a long linger keeps them there).
    producer = IdempotentProducer(handle, "exit-flush", linger_ms=60_000)
    producer.start()
    for n in range(1000):
        producer.append({"n": n})
    print("queued", producer.pending, flush=True)
    """
)


def test_a_producer_left_open_is_flushed_at_interpreter_exit(stream_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_CHILD, stream_url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "failed to flush" not in done.stderr  # the flush itself worked, not a fallback
    queued = int(done.stdout.split()[1])
    assert queued > 0  # the exit flush, not the producer's own timing, sent them
    with StreamHandle(stream_url) as handle:
        assert [item["n"] for item in handle.stream().json()] == list(range(1000))
