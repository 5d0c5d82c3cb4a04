"""Quickstart: create a stream, append to it, inspect it, read it back, close it.

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

        response = await handle.client.get(url, params={"offset": "-1"})
        print(f"read    -> {response.text}")

        closed = await handle.close()
        print(f"close   -> final_offset={closed.final_offset}")


if __name__ == "__main__":
    anyio.run(main)
