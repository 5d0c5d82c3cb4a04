"""The docs pages that copy or cover something in the code stay in step with it."""

from __future__ import annotations

import re
import textwrap

import durable_streams
from tests.docs.blocks import ROOT

REFERENCE = ROOT / "docs" / "reference"
PUBLIC_PACKAGES = ("state", "subscriptions", "sync", "testing", "cli")


def rendered() -> set[str]:
    """Every object a ``::: path`` line of the API reference renders."""
    return {
        match[1]
        for page in REFERENCE.glob("*.md")
        for match in re.finditer(r"^:::\s+(\S+)", page.read_text(encoding="utf-8"), re.MULTILINE)
    }


def test_the_reference_renders_every_public_name() -> None:
    shown = rendered()
    missing = [name for name in durable_streams.__all__ if f"durable_streams.{name}" not in shown]
    assert missing == []
    for package in PUBLIC_PACKAGES:
        assert f"durable_streams.{package}" in shown  # rendered whole: its __all__


def test_the_errors_guide_draws_the_tree_of_the_errors_module() -> None:
    source = (ROOT / "durable_streams" / "_errors.py").read_text(encoding="utf-8")
    tree = re.search(r"excerpt::\n\n(.*?)\n\n", source, re.DOTALL)
    assert tree is not None
    guide = (ROOT / "docs" / "guides" / "errors.md").read_text(encoding="utf-8")
    assert f"```text\n{textwrap.dedent(tree[1])}\n```" in guide
