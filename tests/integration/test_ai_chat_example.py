"""examples/ai_chat end to end: the app, the reference server and the page in headless Chromium.

The browser tests are plain (sync) tests: Playwright's sync API drives Debian's
Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``; ``scripts/dev`` installs it)
from the test's thread while the app runs under uvicorn in a thread of its own
(asyncio: uvicorn's loop). The app's model holds the answer half-way until the
test opens a gate, so "reload half-way" is a state of the page the test waits
for, never a sleep. The SDK part of the app (``write_answer``) is tested on
asyncio and trio below. A screenshot of the finished page is saved in
``tests/artifacts/`` (ignored by git).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread
import httpx
import pytest
import respx
import uvicorn
from playwright.sync_api import Browser, Page, Request, sync_playwright

from durable_streams import StreamHandle
from tests.conftest import ServerTarget

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROMPT = "Why do answers survive a reload?"
HALF = 30  # tokens shown before the model holds
WAIT_MS = 10_000  # bound of every wait on the page


def load_app() -> ModuleType:
    path = ROOT / "examples" / "ai_chat" / "app.py"
    spec = importlib.util.spec_from_file_location("ai_chat_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ai_chat = load_app()
TOKENS: list[str] = ai_chat.fake_answer(PROMPT)
ANSWER = "".join(TOKENS)
FIRST_HALF = "".join(TOKENS[:HALF])


@dataclass
class GatedModel:
    """The fake model's answer, holding after ``HALF`` tokens until the test opens ``gate``."""

    delay: float = 0.005
    gate: threading.Event = field(default_factory=threading.Event)

    async def reply(self, prompt: str) -> AsyncIterator[str]:
        for n, token in enumerate(ai_chat.fake_answer(prompt)):
            if n == HALF and not await anyio.to_thread.run_sync(self.gate.wait, 15):
                raise RuntimeError("the test never opened the gate")
            await anyio.sleep(self.delay)
            yield token


class CuttableProxy:
    """A TCP proxy to the server whose open connections the test can cut (a lost network)."""

    def __init__(self, target: str) -> None:
        url = httpx.URL(target)
        self.target = (url.host, url.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _close(self, *sockets: socket.socket) -> None:
        with self.lock:
            for sock in sockets:
                self.open.discard(sock)
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        """Break every open connection at once, in the middle of whatever it carries."""
        with self.lock:
            sockets = list(self.open)
        self._close(*sockets)

    def stop(self) -> None:
        self.listener.close()
        self.cut()


class ThreadedServer(uvicorn.Server):
    """uvicorn in a thread of its own, telling the test when it serves."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class RunningApp:
    url: str
    model: GatedModel


@contextmanager
def running_app(streams_url: str) -> Iterator[RunningApp]:
    """The example app on 127.0.0.1 (port 0), writing to ``streams_url``, with a gated model."""
    model = GatedModel()
    app = ai_chat.create_app(streams_url, model)
    server = ThreadedServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(10), "the app did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningApp(f"http://127.0.0.1:{port}/", model)
    finally:
        model.gate.set()  # a held answer must not keep the app's shutdown waiting
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; missing, it FAILS the tests (scripts/dev installs it)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: scripts/dev installs Debian's chromium "
            "(apt-get install chromium), or point $CHROMIUM at one",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def chat_app(server: ServerTarget) -> Iterator[RunningApp]:
    with running_app(server.url) as app:
        yield app


# -- the page, as the test sees it -----------------------------------------------------------


def answer(page: Page) -> str:
    return page.text_content("#answer") or ""


def wait_for_length(page: Page, length: int) -> None:
    """Until the answer shows at least ``length`` characters (then the test checks which)."""
    page.wait_for_function(
        "n => document.getElementById('answer').textContent.length >= n",
        arg=length,
        timeout=WAIT_MS,
    )


def wait_until_finished(page: Page) -> str:
    """Until the page stops following the chat; returns how it ended (``done`` or ``error``)."""
    page.wait_for_function(
        "['done', 'error'].includes(document.getElementById('answer').dataset.state)",
        timeout=WAIT_MS,
    )
    return page.get_attribute("#answer", "data-state") or ""


def stored_chat(page: Page) -> dict[str, Any]:
    """What the page keeps in localStorage for the chat it shows."""
    stored = page.evaluate("localStorage.getItem('ai-chat:' + location.hash.slice(1))")
    assert isinstance(stored, str)
    chat: dict[str, Any] = json.loads(stored)
    return chat


def is_live(request: Request) -> bool:
    return "live=sse" in request.url


def record_requests(page: Page) -> list[str]:
    """The URL of every request ``page`` makes from now on, in order."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def reads_of(urls: list[str], stream: str) -> list[str]:
    return [url for url in urls if url.startswith(f"{stream}?")]


def offset_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["offset"][0]


def ask(page: Page, url: str) -> dict[str, Any]:
    """Open the app, send the prompt, wait for the first half; returns the stored chat."""
    page.goto(url)
    page.fill("#prompt", PROMPT)
    page.click("#send")
    wait_for_length(page, len(FIRST_HALF))
    assert answer(page) == FIRST_HALF  # the model holds here: nothing more, nothing less
    chat = stored_chat(page)
    assert chat["text"] == FIRST_HALF
    assert chat["offset"] == page.get_attribute("#answer", "data-offset")
    assert chat["closed"] is False
    return chat


def save_screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


def stored_messages(url: str) -> list[dict[str, Any]]:
    """The whole stream, over plain HTTP (Playwright's sync API keeps an event loop in this
    thread, so the SDK's sync API refuses to run here); the stream must be closed."""
    messages: list[dict[str, Any]] = []
    offset = "-1"
    with httpx.Client(timeout=10) as client:
        for _ in range(100):  # a bound: the stream is a few KiB
            response = client.get(url, params={"offset": offset})
            messages += json.loads(response.content)
            offset = response.headers["stream-next-offset"]
            if "stream-up-to-date" in response.headers:
                assert response.headers.get("stream-closed") == "true"
                return messages
    raise AssertionError("the stream never ended")


def expected_messages(prompt: str) -> list[dict[str, Any]]:
    tokens = ai_chat.fake_answer(prompt)
    return [{"type": "prompt", "text": prompt}, *({"type": "token", "text": t} for t in tokens)]


# -- the SDK part of the app, on asyncio and trio ---------------------------------------------


@pytest.mark.anyio
async def test_an_answer_is_the_prompt_then_each_token_once_then_the_stream_closes(
    stream_url: str,
) -> None:
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        with anyio.fail_after(10):
            await ai_chat.write_answer(handle, ai_chat.FakeModel(delay=0), PROMPT)
            messages = await (await handle.stream()).json()
            assert (await handle.head()).closed
    assert messages == expected_messages(PROMPT)
    assert "".join(m["text"] for m in messages[1:]) == ANSWER


@dataclass
class FailingModel:
    async def reply(self, prompt: str) -> AsyncIterator[str]:
        yield "Half an "
        raise RuntimeError("the model crashed")


@pytest.mark.anyio
async def test_a_model_that_fails_ends_the_answer_with_an_error_message(stream_url: str) -> None:
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        with anyio.fail_after(10):
            await ai_chat.write_answer(handle, FailingModel(), "Hi")
            messages = await (await handle.stream()).json()
            assert (await handle.head()).closed
    assert messages == [
        {"type": "prompt", "text": "Hi"},
        {"type": "token", "text": "Half an "},
        {"type": "error", "message": "the model failed"},
    ]


@dataclass
class EndlessModel:
    started: anyio.Event = field(default_factory=anyio.Event)

    async def reply(self, prompt: str) -> AsyncIterator[str]:
        yield "Once"
        self.started.set()
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_an_answer_cut_short_by_cancellation_is_closed_with_an_error(stream_url: str) -> None:
    model = EndlessModel()
    async with StreamHandle(stream_url) as handle:
        await handle.create(content_type="application/json")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:  # the app's, stopping
                tasks.start_soon(ai_chat.write_answer, handle, model, "Hi")
                await model.started.wait()
                tasks.cancel_scope.cancel()
            messages = await (await handle.stream()).json()
            assert (await handle.head()).closed
    assert messages[0] == {"type": "prompt", "text": "Hi"}
    assert messages[1:-1] in ([], [{"type": "token", "text": "Once"}])  # if it was acknowledged
    assert messages[-1] == {"type": "error", "message": "the answer was interrupted"}


@pytest.mark.anyio
@respx.mock
async def test_the_openai_model_streams_the_completion_deltas() -> None:
    chunks = [{"choices": [{"delta": {"role": "assistant"}}]}]
    chunks += [{"choices": [{"delta": {"content": text}}]} for text in ("Hel", "lo", "!")]
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    route = respx.post("https://api.openai.com/v1/chat/completions").respond(
        200, text=body, headers={"content-type": "text/event-stream"}
    )
    model = ai_chat.OpenAIModel(api_key="sk-test")
    assert [token async for token in model.reply("Hi")] == ["Hel", "lo", "!"]
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert json.loads(sent.content)["messages"] == [{"role": "user", "content": "Hi"}]
    assert json.loads(sent.content)["stream"] is True


@pytest.mark.anyio
@respx.mock
async def test_the_openai_model_fails_on_an_error_status_without_the_key() -> None:
    respx.post("https://api.openai.com/v1/chat/completions").respond(401, json={"error": {}})
    model = ai_chat.OpenAIModel(api_key="sk-secret")
    with pytest.raises(RuntimeError, match="401") as raised:
        _ = [token async for token in model.reply("Hi")]
    assert "sk-secret" not in str(raised.value)


# -- the page in Chromium -------------------------------------------------------------------------


@pytest.mark.sockets  # the browser needs the server behind a socket
def test_a_reload_half_way_resumes_and_a_late_tab_catches_up(
    browser: Browser, chat_app: RunningApp
) -> None:
    page = browser.new_context().new_page()
    urls = record_requests(page)
    chat = ask(page, chat_app.url)

    # Reload half-way: the page shows what it stored and reads on from the offset it stored.
    del urls[:]
    with page.expect_request(is_live, timeout=WAIT_MS):
        page.reload()
    assert answer(page) == FIRST_HALF
    reads = reads_of(urls, chat["stream"])
    assert "live=" not in reads[0]  # catch up with a plain GET first, then go live
    assert {offset_of(url) for url in reads} == {chat["offset"]}

    # A second tab of the same browser opens the app: it shows the stored chat and goes live.
    tab = page.context.new_page()
    with tab.expect_request(is_live, timeout=WAIT_MS):
        tab.goto(chat_app.url)
    assert answer(tab) == FIRST_HALF

    # Another browser (nothing stored) opens the link: it reads from the start and goes live.
    late = browser.new_context().new_page()
    late_urls = record_requests(late)
    with late.expect_request(is_live, timeout=WAIT_MS):
        late.goto(f"{chat_app.url}#{chat['id']}")
    assert answer(late) == FIRST_HALF
    assert offset_of(reads_of(late_urls, chat["stream"])[0]) == "-1"

    chat_app.model.gate.set()  # the rest of the answer comes while both pages follow live
    for shown in (page, tab, late):
        assert wait_until_finished(shown) == "done"
        assert answer(shown) == ANSWER  # no gap, no duplicate
    save_screenshot(page, "ai_chat.png")
    finished = stored_chat(page)
    assert (finished["text"], finished["closed"]) == (ANSWER, True)
    assert stored_messages(chat["stream"]) == expected_messages(PROMPT)


@pytest.mark.sockets
def test_lost_connections_resume_without_gap_or_duplicate(
    browser: Browser, server: ServerTarget, faults: ServerTarget
) -> None:
    proxy = CuttableProxy(server.url)  # the page and the app reach the server through it
    try:
        with running_app(proxy.url) as app:
            page = browser.new_context().new_page()
            urls = record_requests(page)
            failed: list[str] = []
            page.on("requestfailed", lambda request: failed.append(request.url))
            chat = ask(page, app.url)

            # Cut the live connection; the first read after it is dropped by the server too.
            faults.inject_fault(urlsplit(chat["stream"]).path, dropConnection=True, method="GET")
            del urls[:]
            with page.expect_request(is_live, timeout=WAIT_MS):
                proxy.cut()
            assert answer(page) == FIRST_HALF
            assert any("live=" not in url for url in reads_of(failed, chat["stream"]))
            assert {offset_of(url) for url in reads_of(urls, chat["stream"])} == {chat["offset"]}

            # Cut again while tokens flow: whatever was in flight is read again, shown once.
            app.model.gate.set()
            wait_for_length(page, len(FIRST_HALF) + len("".join(TOKENS[HALF : HALF + 10])))
            proxy.cut()
            assert wait_until_finished(page) == "done"
            assert answer(page) == ANSWER
            assert stored_messages(chat["stream"]) == expected_messages(PROMPT)
    finally:
        proxy.stop()


@pytest.mark.sockets
def test_a_link_to_an_answer_that_does_not_exist_shows_an_error(
    browser: Browser, chat_app: RunningApp
) -> None:
    page = browser.new_context().new_page()
    page.goto(f"{chat_app.url}#{'0' * 32}")  # the app knows where it would be; the server has none
    assert wait_until_finished(page) == "error"
    assert page.text_content("#status") == "Error: this chat does not exist"
    assert answer(page) == ""
