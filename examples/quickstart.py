"""Quickstart: create a stream, append, read it live, lose the connection, resume, close.

Run it with ``scripts/dev demo`` (starts a local reference server), or point it
at your own server with ``DURABLE_STREAMS_URL=http://host:port scripts/dev demo``.
"""

from __future__ import annotations

import os
import uuid

import anyio

from durable_streams import StreamHandle


async def main() -> None:
    base = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437").rstrip("/")
    url = f"{base}/v1/stream/quickstart-{uuid.uuid4().hex[:8]}"
    print(f"stream: {url}")

    async with StreamHandle(url) as handle:
        created = await handle.create(content_type="application/json", ttl=3600)
        print(f"create  -> created={created.created} next_offset={created.next_offset}")

        for text in ("Hello", ", durable", " world!"):
            result = await handle.append({"role": "assistant", "text": text})
            print(f"append  {text!r:>12} -> next_offset={result.next_offset}")

        info = await handle.head()
        print(f"head    -> content_type={info.content_type} next_offset={info.next_offset}")

        everything = await (await handle.stream()).json()
        print(f"read    -> {len(everything)} messages: {''.join(m['text'] for m in everything)}")

        # Read live: the history first, then each message as it is appended.
        saved = "-1"
        received: list[dict[str, str]] = []
        async with handle.stream(offset=saved, live="auto") as res:
            async for batch in res:
                received += batch.items
                saved = batch.offset  # persist this once the data is handled
                print(f"live    <- {len(batch.items)} message(s), offset now {saved}")
                if len(received) == len(everything):
                    await handle.append({"role": "user", "text": " Still there?"})
                else:
                    print("live    -- connection lost (simulated)")
                    break

        for text in (" Yes,", " resumed."):
            await handle.append({"role": "assistant", "text": text})
        print("append  2 messages while the reader is away")

        # Resume from the saved offset: exactly the missed messages, then EOF once closed.
        async with handle.stream(offset=saved, live="auto") as res:
            async for batch in res:
                received += batch.items
                print(f"resume  <- {len(batch.items)} message(s), closed={batch.closed}")
                if batch.up_to_date and not batch.closed:
                    closed = await handle.close()
                    print(f"close   -> final_offset={closed.final_offset}")

        final = await (await handle.stream()).json()
        verdict = "no gap, no duplicate" if received == final else "MISMATCH"
        print(f"check   -> received {len(received)} of {len(final)} messages: {verdict}")


if __name__ == "__main__":
    anyio.run(main)
