"""Executing one YAML conformance case with the strict semantics of YAML-CASES.md.

Server-side actions (``server-append``, ``inject-error``, ...) are performed
directly over HTTP; everything else is a command to the adapter. A case fails
with :class:`CaseFailure` on the first runner-side error or unmet expectation.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx

from .adapter_client import AdapterClient, AdapterError
from .cases import Case, UndefinedVariable, substitute
from .expectations import Result, asks_for_error, check_key, demands_error, describe, read_text


class CaseFailure(AssertionError):
    """The case failed: a runner-side error or an unmet expectation."""


@dataclass
class Context:
    """What every case runs against: the reference server, a direct HTTP client, the adapter."""

    server_url: str
    adapter: AdapterClient
    http: httpx.Client
    #: YAML-CASES.md's optional stricter level: a setup step may not fail either.
    stricter: bool = False


def skip_reason(case: Case, features: dict[str, Any]) -> str | None:
    """Why the case cannot run against an adapter with these features (None: it can)."""
    missing = case.missing_features(features)
    if missing:
        return f"adapter lacks required features: {', '.join(missing)}"
    return None


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    """A command without absent keys (the protocol never sends null)."""
    return {key: value for key, value in fields.items() if value is not None}


class CaseRun:
    """One execution of one case."""

    def __init__(self, context: Context, case: Case) -> None:
        self.ctx = context
        self.case = case
        self.variables: dict[str, Any] = {}
        self._background: deque[str] = deque()  # refs of reads sent, reply not yet received
        self._collected: dict[str, Result] = {}
        self._used_dynamic = False
        self._injected = False

    # -- driving -------------------------------------------------------------------------------

    def run(self) -> None:
        self.ctx.adapter.drain()  # replies of an earlier case's unawaited reads
        try:
            for phase in ("setup", "operations"):
                for index, op in enumerate(self.case.test.get(phase) or []):
                    self._step(phase, index, op)
        finally:
            self._cleanup()

    def _step(self, phase: str, index: int, op: dict[str, Any]) -> None:
        action = str(op.get("action"))
        where = f"{phase}[{index}] {action}"
        try:
            result = self._execute(action, op)
        except (AdapterError, UndefinedVariable, httpx.HTTPError, RunnerError) as exc:
            prefix = "setup failed: " if phase == "setup" else ""
            raise CaseFailure(f"{where}: {prefix}{exc}") from exc
        expect = op.get("expect")
        if result is None:
            return
        if not isinstance(expect, dict):
            if (phase == "operations" or self.ctx.stricter) and not result.get("success"):
                raise CaseFailure(f"{where} failed unexpectedly: {describe(result)}")
            return
        self._check(where, action, result, expect)
        self._capture(action, result, expect)

    def _cleanup(self) -> None:
        for op in self.case.test.get("cleanup") or []:
            with contextlib.suppress(Exception):  # cleanup is best-effort
                self._execute(str(op.get("action")), op)
        try:
            self.ctx.adapter.drain()
            if self._used_dynamic:
                self.ctx.adapter.call({"type": "clear-dynamic"})
            if self._injected:
                self.ctx.http.delete(f"{self.ctx.server_url}/_test/inject-error")
        except (AdapterError, httpx.HTTPError):
            pass

    # -- actions ---------------------------------------------------------------------------------

    def _execute(self, action: str, op: dict[str, Any]) -> Result | None:
        handler = getattr(self, "_do_" + action.replace("-", "_"), None)
        if handler is None:
            raise RunnerError(f"unknown action {action!r}")
        result: Result | None = handler(op)
        return result

    def _sub(self, value: Any) -> Any:
        return substitute(value, self.variables)

    def _path(self, op: dict[str, Any]) -> Any:
        return self._sub(op.get("path"))

    def _call(self, command: dict[str, Any]) -> Result:
        self._collect_background()
        return self.ctx.adapter.call(_compact(command))

    def _collect_background(self) -> None:
        # Replies come in command order: a background read answers before anything sent later.
        while self._background:
            ref = self._background.popleft()
            self._collected[ref] = self.ctx.adapter.receive()

    def _do_create(self, op: dict[str, Any]) -> Result:
        path = self._path(op) or f"/test-stream-{uuid.uuid4()}"
        if op.get("as"):
            self.variables[str(op["as"])] = path
        return self._call(
            {
                "type": "create",
                "path": path,
                "contentType": op.get("contentType"),
                "ttlSeconds": op.get("ttlSeconds"),
                "expiresAt": op.get("expiresAt"),
                "headers": op.get("headers"),
                "closed": op.get("closed"),
                "data": op.get("data"),
            }
        )

    def _do_connect(self, op: dict[str, Any]) -> Result:
        return self._call({"type": "connect", "path": self._path(op), "headers": op.get("headers")})

    def _do_head(self, op: dict[str, Any]) -> Result:
        return self._call({"type": "head", "path": self._path(op), "headers": op.get("headers")})

    def _do_delete(self, op: dict[str, Any]) -> Result:
        return self._call({"type": "delete", "path": self._path(op), "headers": op.get("headers")})

    def _do_append(self, op: dict[str, Any]) -> Result:
        if op.get("binaryData") is not None:
            data, binary = str(op["binaryData"]), bool(op["binaryData"])
        elif "json" in op:
            data = json.dumps(op["json"], separators=(",", ":"), ensure_ascii=False)
            binary = False
        else:
            data, binary = self._sub(op.get("data", "")), False
        return self._call(
            {
                "type": "append",
                "path": self._path(op),
                "data": "" if data is None else str(data),
                "binary": binary,
                "seq": op.get("seq"),
                "headers": op.get("headers"),
            }
        )

    def _do_append_batch(self, op: dict[str, Any]) -> Result:
        path = self._path(op)
        items: list[Result] = []
        for item in op.get("items") or []:
            binary = item.get("binaryData")
            items.append(
                self._call(
                    {
                        "type": "append",
                        "path": path,
                        "data": str(binary or item.get("data") or ""),
                        "binary": bool(binary),
                        "seq": item.get("seq"),
                        "headers": op.get("headers"),
                    }
                )
            )
        ok = all(item.get("success") for item in items)
        return {"type": "append", "success": ok, "status": 200 if ok else 207, "items": items}

    def _producer_fields(self, op: dict[str, Any]) -> dict[str, Any]:
        return {
            "path": self._path(op),
            "producerId": op.get("producerId"),
            "epoch": op.get("epoch", 0),
            "headers": op.get("headers"),
        }

    def _do_idempotent_append(self, op: dict[str, Any]) -> Result:
        return self._call(
            {
                "type": "idempotent-append",
                **self._producer_fields(op),
                "data": self._sub(op.get("data", "")),
                "autoClaim": op.get("autoClaim", False),
            }
        )

    def _do_idempotent_append_batch(self, op: dict[str, Any]) -> Result:
        items = [self._sub(item.get("data", "")) for item in op.get("items") or []]
        return self._call(
            {
                "type": "idempotent-append-batch",
                **self._producer_fields(op),
                "items": items,
                "autoClaim": op.get("autoClaim", False),
                "maxInFlight": op.get("maxInFlight"),
            }
        )

    def _do_idempotent_close(self, op: dict[str, Any]) -> Result:
        data = self._sub(op.get("data"))
        return self._call(
            {
                "type": "idempotent-close",
                **self._producer_fields(op),
                "data": data or None,
                "autoClaim": op.get("autoClaim", False),
            }
        )

    def _do_idempotent_detach(self, op: dict[str, Any]) -> Result:
        return self._call({"type": "idempotent-detach", **self._producer_fields(op)})

    def _do_read(self, op: dict[str, Any]) -> Result | None:
        offset = self._sub(op.get("offset"))
        command = _compact(
            {
                "type": "read",
                "path": self._path(op),
                "offset": offset if offset not in (None, "") else None,
                "live": op.get("live"),
                "timeoutMs": op.get("timeoutMs"),
                "maxChunks": op.get("maxChunks"),
                "waitForUpToDate": op.get("waitForUpToDate"),
                "headers": op.get("headers"),
            }
        )
        if not op.get("background"):
            return self._call(command)
        ref = op.get("as")
        if not ref:
            raise RunnerError("a background read needs 'as'")
        self._collect_background()
        self.ctx.adapter.send(command)
        self._background.append(str(ref))
        return None

    def _do_await(self, op: dict[str, Any]) -> Result:
        ref = str(op.get("ref"))
        if ref not in self._collected and ref not in self._background:
            raise RunnerError(f"await {ref!r}: no such background read is pending")
        while ref not in self._collected:
            pending = self._background.popleft()
            self._collected[pending] = self.ctx.adapter.receive()
        return self._collected.pop(ref)

    def _do_close(self, op: dict[str, Any]) -> Result:
        return self._call(
            {
                "type": "close",
                "path": self._path(op),
                "data": op.get("data"),
                "contentType": op.get("contentType"),
            }
        )

    def _do_set_dynamic_header(self, op: dict[str, Any]) -> Result:
        self._used_dynamic = True
        return self._call(
            {
                "type": "set-dynamic-header",
                "name": op.get("name"),
                "valueType": op.get("valueType"),
                "initialValue": op.get("initialValue"),
            }
        )

    def _do_set_dynamic_param(self, op: dict[str, Any]) -> Result:
        self._used_dynamic = True
        return self._call(
            {"type": "set-dynamic-param", "name": op.get("name"), "valueType": op.get("valueType")}
        )

    def _do_clear_dynamic(self, op: dict[str, Any]) -> Result:
        return self._call({"type": "clear-dynamic"})

    def _do_validate(self, op: dict[str, Any]) -> Result:
        return self._call({"type": "validate", "target": op.get("target")})

    # -- direct server actions ---------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.ctx.server_url}{path}"

    def _do_server_append(self, op: dict[str, Any]) -> Result:
        path = str(self._path(op))
        head = self.ctx.http.head(self._url(path))
        headers = {"content-type": head.headers.get("content-type") or "application/octet-stream"}
        headers.update({k.lower(): str(v) for k, v in (op.get("headers") or {}).items()})
        for field, header in (
            ("producerId", "producer-id"),
            ("producerEpoch", "producer-epoch"),
            ("producerSeq", "producer-seq"),
        ):
            if op.get(field) is not None:
                headers[header] = str(op[field])
        data = self._sub(op.get("data", ""))
        response = self.ctx.http.post(
            self._url(path), content=str(data or "").encode("utf-8"), headers=headers
        )
        result: Result = {
            "type": "append",
            "success": True,
            "status": response.status_code,
            "duplicate": response.status_code == 204,
        }
        if "stream-next-offset" in response.headers:
            result["offset"] = response.headers["stream-next-offset"]
        for field in ("producerEpoch", "producerSeq", "producerExpectedSeq", "producerReceivedSeq"):
            header = re.sub(r"([A-Z])", r"-\1", field).lower()
            value = response.headers.get(header)
            if value is not None and value.strip().lstrip("-").isdigit():
                result[field] = int(value)
        return result

    def _do_server_close(self, op: dict[str, Any]) -> Result:
        path = str(self._path(op))
        headers = {"stream-closed": "true"}
        headers.update({k.lower(): str(v) for k, v in (op.get("headers") or {}).items()})
        data = op.get("data")
        if data and op.get("contentType"):
            headers["content-type"] = str(op["contentType"])
        response = self.ctx.http.post(
            self._url(path), content=str(data or "").encode("utf-8"), headers=headers
        )
        return {
            "type": "close",
            "success": True,
            "status": response.status_code,
            "finalOffset": response.headers.get("stream-next-offset", ""),
        }

    def _do_inject_error(self, op: dict[str, Any]) -> None:
        fields = [
            *("status", "retryAfter", "delayMs", "dropConnection", "truncateBodyBytes"),
            *("probability", "method", "corruptBody", "jitterMs", "injectSseEvent"),
        ]
        body = _compact({"path": self._path(op), "count": op.get("count", 1)})
        body.update(_compact({name: op.get(name) for name in fields}))
        self._injected = True
        response = self.ctx.http.post(self._url("/_test/inject-error"), json=body)
        if not response.is_success:
            raise RunnerError(f"inject-error answered {response.status_code}: {response.text}")

    def _do_clear_errors(self, op: dict[str, Any]) -> None:
        self.ctx.http.delete(self._url("/_test/inject-error"))

    def _do_wait(self, op: dict[str, Any]) -> None:
        time.sleep(float(op.get("ms", 0)) / 1000)

    def _do_set(self, op: dict[str, Any]) -> None:
        self.variables[str(op.get("name"))] = self._sub(op.get("value"))

    def _do_assert(self, op: dict[str, Any]) -> None:
        message = op.get("message")
        checks: list[tuple[bool, str]] = []
        if "equals" in op:
            left, right = self._sub(op["equals"].get("left")), self._sub(op["equals"].get("right"))
            checks.append((left == right, f"{left!r} == {right!r}"))
        if "notEquals" in op:
            left = self._sub(op["notEquals"].get("left"))
            right = self._sub(op["notEquals"].get("right"))
            checks.append((left != right, f"{left!r} != {right!r}"))
        if "contains" in op:
            value = str(self._sub(op["contains"].get("value")))
            part = str(self._sub(op["contains"].get("substring")))
            checks.append((part in value, f"{value!r} contains {part!r}"))
        if "matches" in op:
            value = str(self._sub(op["matches"].get("value")))
            pattern = str(op["matches"].get("pattern"))
            checks.append((re.search(pattern, value) is not None, f"{value!r} matches {pattern!r}"))
        if not checks:
            raise RunnerError("assert without equals/notEquals/contains/matches")
        for ok, text in checks:
            if not ok:
                raise RunnerError(f"assert failed: {message or text}")

    # -- expectations --------------------------------------------------------------------------

    def _check(self, where: str, action: str, result: Result, expect: dict[str, Any]) -> None:
        success = bool(result.get("success"))
        if not success and not asks_for_error(expect):
            raise CaseFailure(f"{where} failed unexpectedly: {describe(result)}")
        if success and demands_error(expect):
            raise CaseFailure(
                f"{where} succeeded but the case expects an error: {describe(result)}"
            )
        for key, expected in expect.items():
            problem = check_key(action, result, key, expected)
            if problem:
                raise CaseFailure(f"{where}: {key}: {problem} (result: {describe(result)})")

    def _capture(self, action: str, result: Result, expect: dict[str, Any]) -> None:
        if not result.get("success"):
            return
        if "storeOffsetAs" in expect and (action != "server-append" or "offset" in result):
            if "offset" not in result:
                raise CaseFailure(f"{action}: storeOffsetAs, but the result has no offset")
            self.variables[str(expect["storeOffsetAs"])] = result["offset"]
        if "storeDataAs" in expect:
            self.variables[str(expect["storeDataAs"])] = read_text(result)
        if "storeAs" in expect:
            self.variables[str(expect["storeAs"])] = result


class RunnerError(Exception):
    """A runner-side error: the case cannot be executed as written."""


def run_case(context: Context, case: Case) -> None:
    """Run one case; raises :class:`CaseFailure` when it fails."""
    CaseRun(context, case).run()
