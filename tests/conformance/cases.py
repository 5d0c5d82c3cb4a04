"""Loading the YAML conformance cases and substituting their ``${...}`` variables.

The cases are data owned by the official suite: they are read from the shared
folder at run time (``../shared/conformance/test-cases`` beside the repository,
or ``$DURABLE_STREAMS_CONFORMANCE_CASES``), never copied into the repository.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES_ENV = "DURABLE_STREAMS_CONFORMANCE_CASES"

#: YAML spellings of feature names -> the adapter's feature flags.
FEATURE_ALIASES = {
    "batching": "batching",
    "sse": "sse",
    "long-poll": "longPoll",
    "longPoll": "longPoll",
    "auto": "auto",
    "streaming": "streaming",
    "dynamicHeaders": "dynamicHeaders",
    "dynamic-headers": "dynamicHeaders",
    "retryOptions": "retryOptions",
    "retry-options": "retryOptions",
    "batchItems": "batchItems",
    "batch-items": "batchItems",
    "strictZeroValidation": "strictZeroValidation",
    "strict-zero-validation": "strictZeroValidation",
}


def cases_dir() -> Path:
    """Where the cases live: the env override, else ``<repo>/../shared/conformance/test-cases``."""
    configured = os.environ.get(CASES_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "conformance" / "test-cases").resolve()


@dataclass(frozen=True)
class Case:
    """One test of one suite file."""

    suite_id: str
    test: dict[str, Any]
    file: Path
    suite_requires: tuple[str, ...] = ()
    suite_skip: str | None = None
    tags: tuple[str, ...] = field(default=())
    category: str = ""

    @property
    def test_id(self) -> str:
        return str(self.test["id"])

    @property
    def id(self) -> str:
        return f"{self.suite_id}/{self.test_id}"

    @property
    def requires(self) -> list[str]:
        return [*self.suite_requires, *(self.test.get("requires") or [])]

    @property
    def skip_reason(self) -> str | None:
        """The case's (or its file's) ``skip`` value as a reason, or None."""
        for value in (self.test.get("skip"), self.suite_skip):
            if value:
                return "skip: true" if value is True else str(value)
        return None

    def missing_features(self, features: dict[str, Any]) -> list[str]:
        """Requirements the adapter did not claim (unknown names count as missing)."""
        missing = []
        for name in self.requires:
            flag = FEATURE_ALIASES.get(str(name))
            if flag is None or features.get(flag) is not True:
                missing.append(str(name))
        return missing


def load_cases(directory: Path) -> list[Case]:
    """Every test of every ``*.yaml`` file below ``directory``, in a stable order."""
    cases: list[Case] = []
    for path in sorted(directory.rglob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            suite = yaml.safe_load(fh)
        if not isinstance(suite, dict) or "tests" not in suite:
            raise ValueError(f"{path}: not a conformance suite (no 'tests' key)")
        skip = suite.get("skip")
        for test in suite["tests"] or []:
            cases.append(
                Case(
                    suite_id=str(suite["id"]),
                    test=test,
                    file=path,
                    suite_requires=tuple(suite.get("requires") or ()),
                    suite_skip=(None if not skip else "skip: true" if skip is True else str(skip)),
                    tags=tuple(suite.get("tags") or ()) + tuple(test.get("tags") or ()),
                    category=str(suite.get("category") or ""),
                )
            )
    return cases


def selected(case: Case, categories: str = "", tags: str = "") -> bool:
    """Whether a case passes the filters: comma-separated categories, and tags (any of them)."""
    wanted_categories = {c.strip() for c in categories.split(",") if c.strip()}
    wanted_tags = {t.strip() for t in tags.split(",") if t.strip()}
    if wanted_categories and case.category not in wanted_categories:
        return False
    return not wanted_tags or bool(wanted_tags & set(case.tags))


class UndefinedVariable(KeyError):
    pass


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def js_string(value: Any) -> str:
    """Stringify a value as JavaScript's template literals would (for the cases' data)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def substitute(template: Any, variables: dict[str, Any]) -> Any:
    """Replace ``${name}``, ``${name.prop}`` and ``${randomUUID}`` in a string value."""
    if not isinstance(template, str):
        return template

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if expression == "randomUUID":
            return str(uuid.uuid4())
        root, *props = expression.split(".")
        if root not in variables:
            raise UndefinedVariable(f"undefined variable ${{{expression}}}")
        value = variables[root]
        for prop in props:
            value = value.get(prop) if isinstance(value, dict) else None
            if value is None:
                return ""
        return js_string(value)

    return _VARIABLE.sub(replace, template)
