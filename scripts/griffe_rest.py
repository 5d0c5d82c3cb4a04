"""A griffe extension for the docs site: the SDK's reST-flavoured docstrings as Markdown.

The docstrings are written for readers of the source (and ``help()``): Sphinx roles such as
``:class:`StreamHandle``` and literal blocks introduced by ``Example::``. mkdocstrings renders
Markdown, so this extension rewrites each docstring once the package is loaded:

- a role whose target is a documented public object becomes a cross-reference to its public
  path (``durable_streams.StreamHandle``, never ``durable_streams._handle.StreamHandle``), so
  links land on the API reference; any other role becomes inline code;
- a paragraph ending in ``::`` ends in ``:`` and the indented block after it becomes a fenced
  code block (Python, or console for command lines).

Enabled in ``mkdocs.yml`` (``extensions: [scripts/griffe_rest.py]``); the source keeps its
docstrings as they are.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj):`(~?)([^`]+)`")
CONSOLE_STARTS = ("$ ", "python -m", "durable-streams ", "pip ")


class RestDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        public = _public_paths(pkg)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj, public, loader)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        found.extend(_walk(member))
    return found


def _public_paths(pkg: griffe.Module) -> dict[str, str]:
    """Canonical path -> public path, for every name a public package exports."""
    public: dict[str, str] = {}
    packages = [pkg] + [
        module
        for name, module in pkg.modules.items()
        if not name.startswith("_") and module.is_subpackage
    ]
    for package in packages:
        for name in package.exports or ():
            member = package.members.get(str(name))
            if member is None:
                continue
            canonical = member.target_path if isinstance(member, griffe.Alias) else member.path
            public.setdefault(canonical, f"{package.path}.{name}")
        public.setdefault(package.path, package.path)
        for name, module in package.modules.items():  # e.g. durable_streams.testing.pytest_plugin
            if not name.startswith("_") and not module.is_package:
                public.setdefault(module.path, module.path)
    return public


def _public_path_of(obj: griffe.Object, public: dict[str, str]) -> str | None:
    """The public path of ``obj`` (a class method's is its public class's path + the name)."""
    rest: list[str] = []
    current: griffe.Object | None = obj
    while current is not None:
        if current.path in public:
            return ".".join([public[current.path], *reversed(rest)])
        rest.append(current.name)
        current = current.parent
    return None


def _scopes(obj: griffe.Object, public: dict[str, str]) -> list[str]:
    """Where a short role target is looked up, nearest first."""
    scopes = []
    own = _public_path_of(obj, public)
    if own is not None:
        parts = own.split(".")
        scopes += [".".join(parts[:n]) for n in range(len(parts), 1, -1)]
    module: griffe.Object | None = obj.module
    while module is not None:
        if module.path in public:
            scopes.append(module.path)
        module = module.parent
    scopes.append("durable_streams")
    return list(dict.fromkeys(scopes))


def _documented(path: str, public: dict[str, str], loader: griffe.GriffeLoader) -> bool:
    """Whether ``path`` (a public path) is rendered in the API reference."""
    to_canonical = {pub: canonical for canonical, pub in public.items()}
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        head = ".".join(parts[:n])
        if head in to_canonical:
            target = ".".join([to_canonical[head], *parts[n:]])
            try:
                found = loader.modules_collection[target]
            except (KeyError, ValueError, griffe.AliasResolutionError):
                return False
            # Below a public name only class members are rendered (a module's are its exports).
            return not any(part.startswith("_") for part in parts[n:]) and (
                n == len(parts) or (found.parent is not None and found.parent.is_class)
            )
    return False


def _link(match: re.Match[str], obj: griffe.Object, public: dict[str, str], loader: Any) -> str:
    tilde, target = match.group(1), match.group(2).strip().rstrip("()")
    shown = target.rsplit(".", 1)[-1] if tilde else target
    candidates = [target] if target.startswith("durable_streams") else []
    candidates += [f"{scope}.{target}" for scope in _scopes(obj, public)]
    for candidate in candidates:
        if _documented(candidate, public, loader):
            return f"[`{shown}`][{candidate}]"
    return f"`{shown}`"


def _rewrite(text: str, obj: griffe.Object, public: dict[str, str], loader: Any) -> str:
    text = ROLE.sub(lambda match: _link(match, obj, public, loader), text)
    return _literal_blocks(text)


def _literal_blocks(text: str) -> str:
    """``Para::`` + indented block -> ``Para:`` + a fenced code block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        stripped = line.rstrip()[:-1]
        out.append(stripped if stripped.strip() else "")
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
            block.append(lines[i])
            i += 1
        code = textwrap.dedent("\n".join(block)).strip("\n")
        if not code:
            continue
        language = "console" if code.lstrip().startswith(CONSOLE_STARTS) else "python"
        if "──" in code or "├" in code:
            language = "text"
        out += ["", f"```{language}", code, "```", ""]
    return "\n".join(out)
