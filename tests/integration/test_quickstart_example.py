"""examples/quickstart.py runs against the reference server and shows no gap and no duplicate."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import anyio
import pytest

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_quickstart_resumes_without_gap_or_duplicate(
    server_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DURABLE_STREAMS_URL", server_url)
    example = load_example()
    with anyio.fail_after(20):
        await example.main()
    lines = capsys.readouterr().out.splitlines()
    steps = [line.split()[0] for line in lines]
    for step in ("create", "append", "head", "read", "live", "resume", "close", "check"):
        assert step in steps
    assert "connection lost (simulated)" in "\n".join(lines)
    assert lines[-1] == "check   -> received 6 of 6 messages: no gap, no duplicate"
