"""The public surface: every exported name exists, and the error tree drawn in the
``_errors`` docstring is the real class hierarchy (so the documentation stays honest)."""

from __future__ import annotations

import builtins
import re

import durable_streams
from durable_streams import _errors

_BRANCH = re.compile(r"^(?P<indent>(?:│   |    )*)(?:├── |└── )(?P<name>\w+)(?P<rest>.*)$")


def _drawn_tree() -> list[tuple[str, str, str]]:
    """(class name, drawn parent name, rest of the line) for every line of the drawing."""
    doc = _errors.__doc__
    assert doc is not None
    lines = [line.strip("\n")[4:] for line in doc.splitlines() if line.startswith("    ")]
    root = next(line for line in lines if line.startswith("DurableStreamError"))
    start = lines.index(root)
    stack = ["DurableStreamError"]
    edges: list[tuple[str, str, str]] = []
    for line in lines[start + 1 :]:
        match = _BRANCH.match(line)
        if match is None:
            break
        depth = len(match["indent"]) // 4
        del stack[depth + 1 :]
        edges.append((match["name"], stack[depth], match["rest"]))
        stack.append(match["name"])
    return edges


def test_every_name_in_all_exists() -> None:
    for name in durable_streams.__all__:
        assert hasattr(durable_streams, name), name
    assert len(set(durable_streams.__all__)) == len(durable_streams.__all__)


def test_every_public_error_is_exported() -> None:
    for name in _errors.__all__:
        assert name in durable_streams.__all__, name
        assert getattr(durable_streams, name) is getattr(_errors, name)


def test_error_tree_drawing_matches_the_classes() -> None:
    edges = _drawn_tree()
    drawn = {name for name, _, _ in edges} | {"DurableStreamError"}
    assert drawn == set(_errors.__all__)
    for name, parent, rest in edges:
        cls = getattr(_errors, name)
        assert getattr(_errors, parent) in cls.__bases__, f"{name} is drawn under {parent}"
        mixin = re.match(r"\s*\((\w+)\)", rest)
        if mixin and hasattr(builtins, mixin[1]):
            assert issubclass(cls, getattr(builtins, mixin[1])), f"{name} is not a {mixin[1]}"
        codes = re.findall(r"\b[A-Z][A-Z_]{3,}\b", rest)
        if codes:
            assert cls.code == codes[0], f"{name} is drawn with code {codes[0]}"
        statuses = [int(s) for s in re.findall(r"\b[1-5]\d\d\b", rest)]
        for status in statuses:
            if name == "EmptyAppendError":
                assert _errors.EmptyAppendError("x").status == status
            else:
                assert _errors._STATUS_CLASSES.get(status, _errors.ServerError) is cls


def test_every_error_class_has_a_direct_drawn_parent() -> None:
    edges = _drawn_tree()
    for name, parent, _ in edges:
        bases = [b for b in getattr(_errors, name).__bases__ if issubclass(b, Exception)]
        sdk_bases = [b for b in bases if issubclass(b, _errors.DurableStreamError)]
        assert [b.__name__ for b in sdk_bases] == [parent]
