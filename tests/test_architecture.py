"""The package's layout rules (CONTRIBUTING.md), checked on its source.

No module imports another that imports it back, not even under
``TYPE_CHECKING``, and no module touches another object's ``_private``
attributes (httpx's included): each module talks to others through what they
document.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "durable_streams"


def modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imports_of(name: str, tree: ast.Module) -> set[str]:
    """Modules of the package that ``name`` imports (relative imports, at any depth)."""
    package = name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            if node.module:
                found.add(".".join([*base, *node.module.split(".")]))
            else:
                found.update(".".join([*base, alias.name]) for alias in node.names)
    return found


def test_no_import_cycles() -> None:
    trees = modules()
    graph = {name: imports_of(name, tree) & trees.keys() for name, tree in trees.items()}
    cycles: list[list[str]] = []

    def visit(path: list[str]) -> None:
        for target in sorted(graph[path[-1]]):
            if target == path[0]:
                cycles.append([*path, target])
            elif target not in path and target > path[0]:  # each cycle once, from its least
                visit([*path, target])

    for name in graph:
        visit([name])
    assert cycles == []


def test_no_module_reaches_into_private_attributes() -> None:
    reaches = [
        f"{name}:{node.lineno}: {ast.unparse(node)}"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert reaches == []
