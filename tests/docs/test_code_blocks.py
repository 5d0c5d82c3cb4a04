"""Every Python block in the README and the docs runs, or says why it cannot.

A ```python block must be a complete program that reads the server URL from
``os.environ["DURABLE_STREAMS_URL"]`` and finishes quickly, or the line before it must be
``<!-- fragment: <reason> -->`` with a non-empty reason. Runnable blocks run in children forked
from one pre-imported process (``runner.py``) against ``python -m durable_streams.testing`` over
HTTP, on asyncio and (blocks that call ``anyio.run``) on trio; each run gets its own base URL
(a path prefix on that server), so blocks never see each other's streams. Blocks marked
``<!-- server: reference -->`` run against the reference server (subscriptions, webhooks).
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.blocks import (
    ROOT,
    CodeBlock,
    anchors,
    code_blocks,
    fragment_markers,
    markdown_files,
    python_blocks,
    relative_links,
)
from tests.server.harness import ReferenceServer, start_python_server, start_server

BLOCK_TIMEOUT = 30
BLOCKS = python_blocks()
RUNNABLE = [block for block in BLOCKS if block.fragment is None]
#: Each block on asyncio; those that start an event loop with ``anyio.run`` on trio too.
RUNS = [(block, "asyncio") for block in RUNNABLE] + [
    (block, "trio") for block in RUNNABLE if "anyio.run(" in block.code
]


class Runner:
    """The ``tests.docs.runner`` fork server, one request at a time."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.docs.runner"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read(60) == {"ready": True}

    def read(self, timeout: float) -> dict[str, object]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            raise AssertionError("the docs block runner stopped answering")
        answer: dict[str, object] = json.loads(line)
        return answer

    def run(self, block: CodeBlock, url: str, backend: str) -> dict[str, object]:
        assert self.process.stdin is not None
        request = {
            "name": block.name,
            "code": block.code,
            "url": url,
            "timeout": BLOCK_TIMEOUT,
            "backend": backend,
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self.read(BLOCK_TIMEOUT + 30)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def docs_server() -> Iterator[ReferenceServer]:
    server = start_python_server(long_poll_timeout_ms=1000)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference_server() -> Iterator[ReferenceServer]:
    """For blocks marked ``<!-- server: reference -->`` (what the Python server lacks)."""
    server = start_server(long_poll_timeout_ms=1000)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    started = Runner()
    try:
        yield started
    finally:
        started.stop()


def test_the_docs_have_runnable_blocks() -> None:
    """The collector sees the pages (a broken pattern would make every other test vacuous)."""
    assert len(RUNNABLE) >= 10, [block.name for block in BLOCKS]


@pytest.mark.parametrize(
    ("block", "backend"), RUNS, ids=[f"{block.name}-{backend}" for block, backend in RUNS]
)
def test_block_runs(
    block: CodeBlock, backend: str, request: pytest.FixtureRequest, runner: Runner
) -> None:
    if block.on_reference_server:
        url = request.getfixturevalue("reference_server").url
    else:
        prefix = re.sub(r"[^a-z0-9]+", "-", f"{block.name}-{backend}".lower())
        url = f"{request.getfixturevalue('docs_server').url}/{prefix}"
    answer = runner.run(block, url, backend)
    hint = (
        ""
        if "DURABLE_STREAMS_URL" in block.code
        else "\n(it does not read DURABLE_STREAMS_URL; if it cannot run standalone, mark it "
        "<!-- fragment: <reason> -->)"
    )
    assert answer["rc"] == 0, f"{block.name} exited with {answer['rc']}:\n{answer['output']}{hint}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_fragment_markers_give_a_reason_and_mark_a_python_block(path: Path) -> None:
    marked = {block.line - 1 for block in code_blocks(path) if block.language in ("python", "py")}
    for line, text in fragment_markers(path):
        match = re.match(r"^\s*<!--\s*fragment:(.*?)-->\s*$", text)
        assert match is not None, f"{path.name}:{line}: a fragment marker is alone on its line"
        assert match[1].strip(), f"{path.name}:{line}: a fragment marker gives its reason"
        assert line in marked, f"{path.name}:{line}: a fragment marker sits just before ```python"
    for number, text in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if "server:" in text and "<!--" in text:
            assert re.match(r"^\s*<!--\s*server:\s*reference\s*-->\s*$", text), (
                f"{path.name}:{number}: the only server marker is <!-- server: reference -->"
            )
            assert number in marked, f"{path.name}:{number}: a server marker sits before ```python"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    for line, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        assert destination.exists(), f"{path.name}:{line}: {target} does not exist"
        assert ROOT in destination.parents or destination == ROOT, f"{path.name}:{line}: {target}"
        if anchor and destination.suffix == ".md":
            assert anchor in anchors(destination), (
                f"{path.name}:{line}: no heading #{anchor} in {destination.relative_to(ROOT)}"
            )


def test_the_harness_sees_markers_and_anchors() -> None:
    """The parsing helpers on a known page, so the checks above cannot pass by seeing nothing."""
    sample = ROOT / "tests" / "docs" / "sample.md"
    blocks = code_blocks(sample)
    assert [(block.language, block.fragment) for block in blocks] == [
        ("python", None),
        ("python", "needs a database"),
        ("console", None),
    ]
    assert {"a-heading", "options-and-pitfalls", "custom"} <= anchors(sample)
    assert relative_links(sample) == [(3, "../../README.md"), (3, "#a-heading")]
