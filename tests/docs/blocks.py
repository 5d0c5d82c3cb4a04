"""Find the Python code blocks and relative links of ``README.md`` and ``docs/**/*.md``.

The contract for a fenced ``python`` block: it is a complete program that reads the server URL
from ``os.environ["DURABLE_STREAMS_URL"]`` and finishes quickly (``test_code_blocks.py`` runs it),
or the line just before its fence is ``<!-- fragment: <reason> -->`` with a non-empty reason.
A runnable block preceded by ``<!-- server: reference -->`` runs against the reference server
(``DURABLE_STREAMS_URL`` is then its root URL, shared: such a block names its streams uniquely).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
FRAGMENT = re.compile(r"^\s*<!--\s*fragment:(?P<reason>.*?)-->\s*$")
#: Before a runnable block: run it against the reference server instead of the Python one
#: (for what durable_streams.testing does not serve: subscriptions, webhooks).
SERVER = re.compile(r"^\s*<!--\s*server:\s*reference\s*-->\s*$")
#: Markdown inline links and images: [text](target) / ![alt](target), not [text][ref].
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: where it is, its language, its code, and its fragment marker if any."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    fragment: str | None  # the reason after "fragment:", stripped; None without a marker
    on_reference_server: bool = False  # marked <!-- server: reference -->

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    """README.md and every Markdown page of the docs site, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_blocks(path: Path) -> list[CodeBlock]:
    """Every fenced block of ``path`` (any language), with the marker on the line before it."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            # A fence indented in a list item indents its lines by as much: remove that much.
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        previous = lines[i - 1] if i > 0 else ""
        marker = FRAGMENT.match(previous)
        blocks.append(
            CodeBlock(
                path=path,
                line=i + 1,
                language=opening["info"].lower(),
                code="\n".join(body) + "\n",
                fragment=marker["reason"].strip() if marker else None,
                on_reference_server=SERVER.match(previous) is not None,
            )
        )
        i = j + 1
    return blocks


def python_blocks() -> list[CodeBlock]:
    return [
        block
        for path in markdown_files()
        for block in code_blocks(path)
        if block.language in ("python", "py")
    ]


def fragment_markers(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every fragment marker in ``path``, wherever it is."""
    return [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1)
        if "fragment:" in line and "<!--" in line
    ]


def slug(heading: str) -> str:
    """The anchor Python-Markdown's ``toc`` (MkDocs) and GitHub give a heading, for plain text."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link shows its text
    text = re.sub(r"[^\w\s-]", "", text.strip().lower())
    return re.sub(r"[\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file (outside code blocks), plus explicit ``{#id}``."""
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            text = heading[1]
            explicit = re.search(r"\{\s*#([\w-]+)\s*\}\s*$", text)
            if explicit:
                found.add(explicit[1])
                text = text[: explicit.start()]
            found.add(slug(text))
    return found


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every inline link in ``path`` that stays in this repository."""
    links = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        for match in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = match["target"].strip("<>")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto: ...
            links.append((number, target))
    return links
