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


def test_lazy_exports_match_the_type_checking_imports() -> None:
    """``__getattr__`` loads names from ``_EXPORTS``; type checkers read the imports under
    ``TYPE_CHECKING``. Both must name the same modules and names, and ``__all__`` all of them."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(durable_streams))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported = {
        (f".{node.module}", alias.name)
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    lazy = {(module, name) for module, names in durable_streams._EXPORTS.items() for name in names}
    assert imported == lazy
    assert {name for _, name in lazy} | {"__version__"} == set(durable_streams.__all__)


def test_importing_the_package_loads_no_dependency() -> None:
    """``import durable_streams`` stays cheap (the CLI's ``--help`` depends on it)."""
    import subprocess
    import sys

    code = (
        "import sys, durable_streams; "
        "print(sorted(m for m in ('httpx', 'pydantic', 'anyio') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
