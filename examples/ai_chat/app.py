"""AI chat whose answers survive reloads: tokens go to a durable stream, the page reads it.

``POST /chat`` creates one JSON stream per answer and starts the model in the
background; an :class:`~durable_streams.IdempotentProducer` appends the prompt
and then every token as it is generated, and closes the stream when the answer
is complete (the reader's end of file). The page (``index.html`` beside this
file, no build step) reads the stream straight from the Durable Streams server,
first with plain GETs and then live over SSE, keeps the text and the offset
after it in ``localStorage``, and after a reload or a lost connection continues
from that offset: no gap, no duplicate. A link to the chat opened anywhere else
catches up from the start and follows live.

The model is a deterministic fake unless ``OPENAI_API_KEY`` is set (then an
OpenAI-compatible chat completions API is streamed, through httpx)::

    python -m durable_streams.testing --port 4437 &    # or any Durable Streams server
    DURABLE_STREAMS_URL=http://127.0.0.1:4437 python examples/ai_chat/app.py --port 8000

The browser reads ``DURABLE_STREAMS_URL`` itself, so it must be reachable from
the browser and answer with CORS headers (the reference server and
``durable_streams.testing`` both send ``Access-Control-Allow-Origin: *``).
Needs ``fastapi`` and ``uvicorn``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx
from anyio.abc import TaskGroup
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from durable_streams import DurableStreamError, IdempotentProducer, StreamHandle

PAGE = Path(__file__).with_name("index.html")
logger = logging.getLogger("ai_chat")

# -- models ----------------------------------------------------------------------------------


class Model(Protocol):
    """What the app needs of a model: the answer to a prompt, as text pieces in order."""

    def reply(self, prompt: str) -> AsyncIterator[str]: ...


def fake_answer(prompt: str) -> list[str]:
    """The fake model's answer to ``prompt``, cut into tokens (``"".join`` gives the text).

    Deterministic, so a test can compute what the page must show. It has a line
    break, non-ASCII text and markup that the page must show as text.
    """
    text = (
        f"You asked: “{prompt}”. I am a fake model, so here is a made-up answer, "
        "one token at a time. Each token is a JSON message appended to a durable stream; "
        "your browser reads that stream itself and remembers the offset after the last "
        "token it showed.\nReload the page, or lose the connection: it continues from "
        "that offset — no gap, no duplicate. Markup such as <b>this</b> stays text, and "
        "so do the accents of a naïve café. The end."
    )
    return re.findall(r"\s*\S+", text)


@dataclass
class FakeModel:
    """Replies with :func:`fake_answer`, ``delay`` seconds per token (pacing for the demo)."""

    delay: float = 0.05

    async def reply(self, prompt: str) -> AsyncIterator[str]:
        for token in fake_answer(prompt):
            await anyio.sleep(self.delay)
            yield token


@dataclass
class OpenAIModel:
    """Streams a chat completion from an OpenAI-compatible API (``stream: true``, SSE)."""

    api_key: str = field(repr=False)  # never in logs or tracebacks
    model: str = "gpt-4o-mini"
    base_url: str = "https://api.openai.com/v1"

    async def reply(self, prompt: str) -> AsyncIterator[str]:
        messages = [{"role": "user", "content": prompt}]
        body = {"model": self.model, "stream": True, "messages": messages}
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with (
            httpx.AsyncClient(base_url=self.base_url, timeout=60) as client,
            client.stream("POST", "/chat/completions", json=body, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise RuntimeError(f"the model API answered {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[5:]).get("choices") or [{}]
                content = (choices[0].get("delta") or {}).get("content")
                if content:
                    yield content


def model_from_environment() -> Model:
    """The OpenAI model if ``OPENAI_API_KEY`` is set, else the fake (``AI_CHAT_TOKEN_DELAY``)."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return OpenAIModel(key, model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    return FakeModel(delay=float(os.environ.get("AI_CHAT_TOKEN_DELAY", "0.05")))


# -- writing an answer -------------------------------------------------------------------------


async def write_answer(handle: StreamHandle, model: Model, prompt: str) -> None:
    """Append the prompt and every token of the answer to ``handle``'s stream, then close it.

    The stream must exist (JSON). Appends do not wait: the producer batches
    tokens that come faster than a round trip, and retries with the same
    producer tuple, so a retried batch is never stored twice. A model that
    fails ends the answer with an ``error`` message instead, and so does
    cancellation (the app stopping): readers are never left waiting on an
    answer nobody writes.

    Example::

        async with StreamHandle(url) as handle:
            await handle.create(content_type="application/json")
            await write_answer(handle, FakeModel(delay=0), "Hello?")
    """
    try:
        async with IdempotentProducer(handle, f"ai-chat-{uuid.uuid4().hex}") as producer:
            await producer.send({"type": "prompt", "text": prompt})  # stored before any token
            try:
                async for token in model.reply(prompt):
                    await producer.wait_for_capacity()
                    producer.append({"type": "token", "text": token})
            except Exception:
                logger.exception("the model failed")
                await producer.close(final={"type": "error", "message": "the model failed"})
                return
            await producer.close()
    except anyio.get_cancelled_exc_class():
        # Tokens not yet acknowledged are dropped with the producer; close after what was stored.
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await handle.close(final={"type": "error", "message": "the answer was interrupted"})
            except DurableStreamError:
                logger.exception("could not close the interrupted answer %r", handle)
        raise


# -- the web app ---------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=2000)


class Chat(BaseModel):
    id: str
    stream: str


CHAT_ID = re.compile(r"[0-9a-f]{32}")


def create_app(streams_url: str, model: Model) -> FastAPI:
    """The chat app: answers go to streams under ``streams_url`` (a server's base URL).

    Example::

        app = create_app("http://127.0.0.1:4437", FakeModel())
        uvicorn.run(app, port=8000)
    """
    base = streams_url.rstrip("/")
    state: dict[str, Any] = {}

    def chat(chat_id: str) -> Chat:
        return Chat(id=chat_id, stream=f"{base}/v1/stream/ai-chat-{chat_id}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=30) as client, anyio.create_task_group() as tasks:
            state["client"], state["tasks"] = client, tasks
            yield
            tasks.cancel_scope.cancel()  # answers being written stop with the app

    app = FastAPI(title="AI chat on Durable Streams", lifespan=lifespan)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    @app.post("/chat")
    async def start_chat(request: ChatRequest) -> Chat:
        """Create the answer's stream, start writing it, and say where it is."""
        started = chat(uuid.uuid4().hex)
        handle = StreamHandle(started.stream, client=state["client"])
        try:  # before answering, so the page's first read finds the stream
            await handle.create(content_type="application/json", ttl=24 * 3600)
        except DurableStreamError as error:
            raise HTTPException(502, f"the Durable Streams server refused: {error}") from None
        tasks: TaskGroup = state["tasks"]
        tasks.start_soon(write_answer_logged, handle, model, request.prompt)
        return started

    @app.get("/chat/{chat_id}")
    async def find_chat(chat_id: str) -> Chat:
        """Where the answer of a chat link is (for a page that has not stored it)."""
        if not CHAT_ID.fullmatch(chat_id):
            raise HTTPException(404, "no such chat")
        return chat(chat_id)

    return app


async def write_answer_logged(handle: StreamHandle, model: Model, prompt: str) -> None:
    """:func:`write_answer` in the background: a failure is logged, not raised into the app."""
    try:
        await write_answer(handle, model, prompt)
    except DurableStreamError:
        logger.exception("writing an answer to %r failed", handle)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    streams_url = os.environ.get("DURABLE_STREAMS_URL", "http://127.0.0.1:4437")
    uvicorn.run(create_app(streams_url, model_from_environment()), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
