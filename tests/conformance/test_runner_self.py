"""Tests of the conformance runner itself: broken adapters must fail the cases they should.

Real cases from the shared folder run against deliberately broken fake adapters
(``fake_adapter.py``), and small synthetic cases pin the strict expectation rules.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.harness import ReferenceServer

from . import adapter_client
from .adapter_client import AdapterClient, AdapterError
from .cases import (
    Case,
    UndefinedVariable,
    cases_dir,
    js_string,
    load_cases,
    selected,
    substitute,
)
from .expectations import asks_for_error, demands_error
from .runner import CaseFailure, Context, run_case

FAKE = Path(__file__).with_name("fake_adapter.py")


def fake(mode: str, server: ReferenceServer, http: httpx.Client) -> Iterator[Context]:
    adapter = AdapterClient([sys.executable, FAKE, mode])
    adapter.start(server.url)
    try:
        yield Context(server_url=server.url, adapter=adapter, http=http)
    finally:
        adapter.stop()


@pytest.fixture(scope="module")
def error_adapter(
    conformance_server: ReferenceServer, conformance_http: httpx.Client
) -> Iterator[Context]:
    yield from fake("error", conformance_server, conformance_http)


@pytest.fixture(scope="module")
def wrong_adapter(
    conformance_server: ReferenceServer, conformance_http: httpx.Client
) -> Iterator[Context]:
    yield from fake("wrong", conformance_server, conformance_http)


def real_case(case_id: str) -> Case:
    directory = cases_dir()
    if not directory.is_dir():
        pytest.skip(f"conformance cases not found at {directory}")
    for case in load_cases(directory):
        if case.id == case_id:
            return case
    raise LookupError(f"no case {case_id} in {directory}")


def synthetic(*operations: dict[str, Any], setup: list[dict[str, Any]] | None = None) -> Case:
    test = {"id": "synthetic", "setup": setup or [], "operations": list(operations)}
    return Case(suite_id="self", test=test, file=Path(__file__))


# -- real cases against broken adapters ---------------------------------------------------------

REAL_CASES = [
    "consumer-catchup/read-single-chunk",
    "consumer-catchup/read-empty-stream",
    "consumer-retry-resilience/no-retry-on-404",
    "stream-closure/close-nonexistent-stream",
    "producer-create/create-idempotent",
    "input-validation/retry-options-negative-max-retries",
    "lifecycle-dynamic-headers/dynamic-header-per-request",
]


@pytest.mark.parametrize("case_id", REAL_CASES)
def test_adapter_that_errors_on_everything_fails_real_cases(
    case_id: str, error_adapter: Context
) -> None:
    with pytest.raises(CaseFailure):
        run_case(error_adapter, real_case(case_id))


@pytest.mark.parametrize("case_id", REAL_CASES)
def test_adapter_returning_wrong_data_fails_real_cases(
    case_id: str, wrong_adapter: Context
) -> None:
    with pytest.raises(CaseFailure):
        run_case(wrong_adapter, real_case(case_id))


# -- the strict rules, with synthetic cases -------------------------------------------------------


def test_a_failing_setup_step_without_expect_is_tolerated(error_adapter: Context) -> None:
    run_case(error_adapter, synthetic(setup=[{"action": "create", "as": "p"}]))


def test_the_stricter_level_fails_a_failing_setup_step(error_adapter: Context) -> None:
    stricter = dataclasses.replace(error_adapter, stricter=True)
    with pytest.raises(CaseFailure, match=r"setup\[0\] create failed unexpectedly"):
        run_case(stricter, synthetic(setup=[{"action": "create", "as": "p"}]))


def test_a_failing_setup_step_with_expect_fails(error_adapter: Context) -> None:
    case = synthetic(
        setup=[{"action": "append", "path": "/x", "data": "a", "expect": {"storeOffsetAs": "o"}}]
    )
    with pytest.raises(CaseFailure, match="failed unexpectedly"):
        run_case(error_adapter, case)


def test_a_failing_operation_without_expect_fails(error_adapter: Context) -> None:
    with pytest.raises(CaseFailure, match="INTERNAL_ERROR"):
        run_case(error_adapter, synthetic({"action": "head", "path": "/x"}))


@pytest.mark.parametrize("expect", [{"error": True}, {"success": False}, {"valid": False}])
def test_an_error_satisfies_expectations_that_ask_for_one(
    expect: dict[str, Any], error_adapter: Context
) -> None:
    run_case(error_adapter, synthetic({"action": "head", "path": "/x", "expect": expect}))


@pytest.mark.parametrize(
    "expect",
    [
        {"errorCode": "NOT_FOUND"},
        {"status": 404},  # the error carries no status
        {"messageContains": ["not there"]},
        {"errorContains": "BROKEN"},  # case-sensitive
    ],
)
def test_an_error_of_the_wrong_kind_fails(expect: dict[str, Any], error_adapter: Context) -> None:
    with pytest.raises(CaseFailure):
        run_case(error_adapter, synthetic({"action": "head", "path": "/x", "expect": expect}))


def test_error_keys_match_case_rules(error_adapter: Context) -> None:
    case = synthetic(
        {
            "action": "head",
            "path": "/x",
            "expect": {
                "errorCode": "INTERNAL_ERROR",
                "messageContains": ["BROKEN on"],
                "errorContains": "broken",
            },
        }
    )
    run_case(error_adapter, case)


@pytest.mark.parametrize(
    "expect",
    [
        {"error": True},
        {"valid": False},
        {"errorCode": "NOT_FOUND"},
        {"status": 404},
        {"data": "right data"},
        {"upToDate": True},
        {"chunkCount": 0},
        {"streamClosed": True},
        {"headersSent": {"X-Counter": "1"}},
        {"duplicate": True},
    ],
)
def test_success_with_wrong_content_fails(expect: dict[str, Any], wrong_adapter: Context) -> None:
    with pytest.raises(CaseFailure):
        run_case(wrong_adapter, synthetic({"action": "read", "path": "/x", "expect": expect}))


def test_matching_expectations_pass_and_captures_feed_later_steps(wrong_adapter: Context) -> None:
    case = synthetic(
        {
            "action": "read",
            "path": "/x",
            "expect": {
                "status": 200,
                "data": "wrong data",
                "dataContainsAll": ["wrong", "data"],
                "chunkCount": 1,
                "minChunks": 1,
                "upToDate": False,
                "streamClosed": False,
                "storeOffsetAs": "offset",
                "storeDataAs": "text",
            },
        },
        {"action": "assert", "equals": {"left": "${text}", "right": "wrong data"}},
        {"action": "read", "path": "/x", "offset": "${offset}", "expect": {"minChunks": 1}},
    )
    run_case(wrong_adapter, case)


def test_a_failed_assert_fails_the_case(wrong_adapter: Context) -> None:
    case = synthetic(
        {"action": "assert", "equals": {"left": "a", "right": "b"}, "message": "must match"}
    )
    with pytest.raises(CaseFailure, match="must match"):
        run_case(wrong_adapter, case)


def test_append_batch_indices_are_checked_per_item(error_adapter: Context) -> None:
    items = [{"data": "a"}, {"data": "b"}]
    run_case(
        error_adapter,
        synthetic({"action": "append-batch", "path": "/x", "items": items,
                   "expect": {"failIndices": [0, 1], "allSucceed": False}}),
    )  # fmt: skip
    with pytest.raises(CaseFailure, match="did not succeed"):
        run_case(
            error_adapter,
            synthetic({"action": "append-batch", "path": "/x", "items": items,
                       "expect": {"succeedIndices": [0], "failIndices": [1]}}),
        )  # fmt: skip


def test_background_read_is_collected_by_await(wrong_adapter: Context) -> None:
    case = synthetic(
        {"action": "read", "path": "/x", "live": "sse", "background": True, "as": "r"},
        {"action": "wait", "ms": 1},
        {"action": "await", "ref": "r", "expect": {"data": "wrong data"}},
    )
    run_case(wrong_adapter, case)
    assert wrong_adapter.adapter.outstanding == 0


def test_await_without_a_pending_read_fails(wrong_adapter: Context) -> None:
    with pytest.raises(CaseFailure, match="no such background read"):
        run_case(wrong_adapter, synthetic({"action": "await", "ref": "nothing"}))


def test_an_undefined_variable_fails(wrong_adapter: Context) -> None:
    with pytest.raises(CaseFailure, match="undefined variable"):
        run_case(wrong_adapter, synthetic({"action": "head", "path": "${missing}"}))


def test_an_unknown_action_fails(wrong_adapter: Context) -> None:
    with pytest.raises(CaseFailure, match="unknown action"):
        run_case(wrong_adapter, synthetic({"action": "teleport"}))


def test_direct_actions_talk_to_the_server(wrong_adapter: Context) -> None:
    case = synthetic(
        {"action": "server-append", "path": "/missing-${randomUUID}", "data": "x",
         "expect": {"status": 404}},
    )  # fmt: skip
    run_case(wrong_adapter, case)
    rejected = synthetic({"action": "inject-error", "path": "/x", "count": 1})  # no fault field
    with pytest.raises(CaseFailure, match="inject-error answered 400"):
        run_case(wrong_adapter, rejected)


def test_an_adapter_that_stops_answering_is_restarted(
    conformance_server: ReferenceServer,
    conformance_http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(adapter_client, "COMMAND_TIMEOUT", 0.5)
    for context in fake("hang", conformance_server, conformance_http):
        first = context.adapter._process
        with pytest.raises(CaseFailure, match="no reply"):
            run_case(context, synthetic({"action": "head", "path": "/x"}))
        assert context.adapter._process is not first  # a fresh, re-initialised process
        assert context.adapter.features.get("sse") is True
        with pytest.raises(AdapterError):
            context.adapter.call({"type": "head", "path": "/x"})
        # Stopping with a reply still owed kills the process instead of starting another.
        context.adapter.send({"type": "head", "path": "/x"})
        hung = context.adapter._process
        assert hung is not None
        context.adapter.stop()
        assert context.adapter._process is None
        assert hung.poll() is not None


# -- pure helpers ----------------------------------------------------------------------------------


def test_gate_rules() -> None:
    assert asks_for_error({"status": 404})
    assert not demands_error({"status": 404})
    assert asks_for_error({"failIndices": [1]})
    assert not demands_error({"failIndices": [1]})
    assert not asks_for_error({"failIndices": []})
    assert demands_error({"errorContains": "x"})
    assert demands_error({"valid": False})
    assert not asks_for_error({"status": 200, "data": "x"})


def test_substitution() -> None:
    variables = {"a": "/s", "n": 3, "f": 2.0, "b": True, "obj": {"offset": "o1"}, "none": None}
    assert substitute("${a}/x-${n}-${f}-${b}-${none}", variables) == "/s/x-3-2-true-"
    assert substitute("${obj.offset}|${obj.missing}", variables) == "o1|"
    assert substitute("${randomUUID}", {}) != substitute("${randomUUID}", {})
    assert substitute(5, {}) == 5
    with pytest.raises(UndefinedVariable):
        substitute("${nope}", variables)
    assert js_string([1, "é"]) == '[1,"é"]'


def test_filters() -> None:
    case = Case(suite_id="s", test={"id": "t"}, file=Path(__file__), tags=("sse", "live"),
                category="consumer")  # fmt: skip
    assert selected(case)
    assert selected(case, categories="producer, consumer")
    assert not selected(case, categories="producer")
    assert selected(case, tags="json,sse")
    assert not selected(case, categories="consumer", tags="json")


def test_a_missing_cases_folder_gives_one_skipped_item(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from . import test_cases

    monkeypatch.setenv("DURABLE_STREAMS_CONFORMANCE_CASES", str(tmp_path / "absent"))
    (param,) = test_cases._params()
    (mark,) = param.marks
    assert mark.name == "skip"
    assert "absent" in mark.kwargs["reason"]
    assert "DURABLE_STREAMS_CONFORMANCE_CASES" in mark.kwargs["reason"]


def test_cases_load_from_the_configured_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from . import test_cases

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text(
        "id: suite-a\ncategory: consumer\nrequires: [sse]\ntests:\n"
        "  - id: one\n    operations: []\n"
        "  - id: two\n    skip: flaky\n    operations: []\n"
    )
    monkeypatch.setenv("DURABLE_STREAMS_CONFORMANCE_CASES", str(tmp_path))
    params = test_cases._params()
    assert [p.id for p in params] == ["suite-a/one", "suite-a/two"]
    one, two = (p.values[0] for p in params)
    assert one.missing_features({"sse": True}) == []
    assert one.missing_features({"longPoll": True}) == ["sse"]
    assert two.skip_reason == "flaky"
    assert list(params[1].marks) == []  # a case's own skip does not excuse it: it runs
