"""Every case of the official YAML conformance suite, run through the project's adapter.

Select them with ``-m conformance`` (or by this path). Items are named
``<suite id>/<test id>``; ``-k`` selects by id, and
``DURABLE_STREAMS_CONFORMANCE_CATEGORY`` / ``DURABLE_STREAMS_CONFORMANCE_TAGS``
(comma-separated) by the cases' category or tags. Without the cases folder they are skipped with the
reason; CI has the folder.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .cases import CASES_ENV, Case, cases_dir, load_cases, selected
from .runner import CaseFailure, Context, run_case, skip_reason

pytestmark = pytest.mark.conformance

#: Cases whose expectation contradicts a documented SDK behaviour (pending a decision).
#: Strict: if one starts passing, the entry must go.
SDK_DECISIONS = {
    "idempotent-json-batching/client-deduplication-works": (
        "issue 11: a new producer instance at a fixed epoch 0 whose first attempt is "
        "answered 204 did not store its batch (another incarnation holds the tuple); the SDK "
        "raises ProducerIdentityError instead of reporting success, the case expects success"
    ),
}

#: Cases whose expectation contradicts the pinned reference server (YAML-CASES.md §8).
#: Strict: if one starts passing, the entry must go.
SERVER_DISAGREEMENTS = {
    "consumer-errors/read-future-offset": (
        "the reference server answers an offset past the tail with 400 (INVALID_OFFSET); "
        "the case only expects chunkCount: 0 and its comment accepts either outcome"
    ),
    "consumer-offset/offset-zero-start": (
        "the reference server rejects offset '0' with 400 (offsets are \\d{16}_\\d{16}); "
        "the case expects it to read from the start"
    ),
}


#: Failures that only the optional stricter level (DURABLE_STREAMS_CONFORMANCE_STRICTER=1,
#: failing setup steps fail the case) sees (YAML-CASES.md §8).
STRICTER_DISAGREEMENTS = {
    "consumer-sse-base64/sse-base64-empty-payload": (
        "its setup appends an empty body, which the protocol rejects with 400"
    ),
}


def _params() -> list[Any]:
    directory = cases_dir()
    if not directory.is_dir():
        reason = f"conformance cases not found at {directory} (set {CASES_ENV})"
        return [pytest.param(None, id="cases-missing", marks=pytest.mark.skip(reason=reason))]
    params = []
    categories = os.environ.get("DURABLE_STREAMS_CONFORMANCE_CATEGORY", "")
    tags = os.environ.get("DURABLE_STREAMS_CONFORMANCE_TAGS", "")
    known = dict(SERVER_DISAGREEMENTS)
    known.update(SDK_DECISIONS)
    if os.environ.get("DURABLE_STREAMS_CONFORMANCE_STRICTER") == "1":
        known.update(STRICTER_DISAGREEMENTS)
    for case in load_cases(directory):
        if not selected(case, categories, tags):
            continue
        marks: list[pytest.MarkDecorator] = []
        if case.id in known:
            marks.append(pytest.mark.xfail(reason=known[case.id], strict=True))
        # A case's own `skip` names another client's bug, not a protocol question: it
        # runs like any other case here, so it can neither hide nor excuse a failure.
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_case(case: Case, conformance: Context) -> None:
    reason = skip_reason(case, conformance.adapter.features)
    if reason:
        pytest.skip(reason)
    try:
        run_case(conformance, case)
    except CaseFailure as failure:
        pytest.fail(str(failure), pytrace=False)
