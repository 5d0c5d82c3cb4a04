"""The strict expectation rules of YAML-CASES.md §6: the error gate and every expect key."""

from __future__ import annotations

import base64
import json
from typing import Any

Result = dict[str, Any]

# Expect keys that ask for an error (the gate), and the subset a success cannot satisfy.
_ERROR_KEYS = ("errorCode", "messageContains", "errorContains")


def asks_for_error(expect: dict[str, Any]) -> bool:
    status = expect.get("status")
    return (
        demands_error(expect)
        or (isinstance(status, int) and not isinstance(status, bool) and status >= 400)
        or bool(expect.get("failIndices"))
    )


def demands_error(expect: dict[str, Any]) -> bool:
    return (
        any(key in expect for key in _ERROR_KEYS)
        or expect.get("error") is True
        or expect.get("success") is False
        or expect.get("valid") is False
    )


def describe(result: Result) -> str:
    if result.get("success"):
        return json.dumps(result, ensure_ascii=True)[:500]
    return (
        f"error {result.get('errorCode')} (status {result.get('status')}): "
        f"{str(result.get('message'))[:300]!r}"
    )


_CAPTURE_KEYS = frozenset({"storeAs", "storeOffsetAs", "storeDataAs"})
_PRODUCER_KEYS = ("duplicate", "producerEpoch", "producerSeq", "producerExpectedSeq")


def read_text(result: Result) -> str:
    """The joined text of a read's chunks (binary chunks base64-decoded, UTF-8 with replacement)."""
    return "".join(chunk_text(chunk) for chunk in result.get("chunks") or [])


def chunk_text(chunk: dict[str, Any]) -> str:
    data = str(chunk.get("data", ""))
    if chunk.get("binary"):
        return base64.b64decode(data).decode("utf-8", "replace")
    return data


def check_key(action: str, result: Result, key: str, expected: Any) -> str | None:
    """Why ``result`` does not meet ``key: expected`` (None when it does)."""
    if key in _CAPTURE_KEYS:
        return None
    success = bool(result.get("success"))
    is_read = success and action in ("read", "await") and isinstance(result.get("chunks"), list)
    message = str(result.get("message", ""))

    def need_read() -> str | None:
        return None if is_read else "not a successful read result"

    if key == "status":
        return None if result.get("status") == expected else f"got {result.get('status')!r}"
    if key == "errorCode":
        ok = not success and result.get("errorCode") == expected
        return None if ok else f"expected error {expected!r}, got {result.get('errorCode')!r}"
    if key == "messageContains":
        wanted = expected if isinstance(expected, list) else [expected]
        absent = [w for w in wanted if str(w).lower() not in message.lower()]
        return None if not success and not absent else f"message lacks {absent!r}"
    if key == "errorContains":
        return None if not success and str(expected) in message else "message lacks it"
    if key == "error":
        return None if (not success) == bool(expected) else f"success is {success}"
    if key == "success":
        return None if success == expected else f"success is {success}"
    if key == "valid":
        return None if success == bool(expected) else f"success is {success}"
    if key in ("data", "dataContains", "dataContainsAll", "dataExact"):
        problem = need_read()
        if problem:
            return problem
        text = read_text(result)
        chunks = [chunk_text(c) for c in result["chunks"]]
        if key == "data":
            ok = text == expected
        elif key == "dataContains":
            ok = str(expected) in text
        elif key == "dataContainsAll":
            ok = all(str(part) in text for part in expected)
        else:
            ok = chunks == list(expected)
        return None if ok else f"expected {expected!r}, read {text[:300]!r}"
    if key in ("chunkCount", "minChunks", "maxChunks"):
        problem = need_read()
        if problem:
            return problem
        count = len(result["chunks"])
        ok = {
            "chunkCount": count == expected,
            "minChunks": count >= expected,
            "maxChunks": count <= expected,
        }[key]
        return None if ok else f"{count} chunks"
    if key == "upToDate":
        problem = need_read()
        if problem:
            return problem
        return None if result.get("upToDate") == expected else f"got {result.get('upToDate')!r}"
    if key == "streamClosed":
        if not (is_read or (success and action == "head")):
            return "not a successful read or head result"
        got = result.get("streamClosed")
        return None if got == expected else f"got {got!r}"
    if key in ("contentType", "hasOffset"):
        if not (success and action == "head"):
            return "not a successful head result"
        if key == "contentType":
            got = result.get("contentType")
            return None if got == expected else f"got {got!r}"
        has = bool(result.get("offset"))
        return None if has == bool(expected) else f"offset is {result.get('offset')!r}"
    if key == "finalOffset":
        return None if result.get("finalOffset") == expected else "differs"
    if key in ("headersSent", "paramsSent"):
        sent = result.get(key)
        if not success or not isinstance(sent, dict):
            return f"result carries no {key}"
        wrong = {k: sent.get(k) for k, v in expected.items() if sent.get(k) != v}
        return None if not wrong else f"sent {wrong!r}"
    if key in (*_PRODUCER_KEYS, "producerReceivedSeq"):
        if key not in result:
            return "missing from the result"
        return None if result[key] == expected else f"got {result[key]!r}"
    if key == "allSucceed":
        items = result.get("items")
        all_ok = all(i.get("success") for i in items) if isinstance(items, list) else success
        return None if all_ok == bool(expected) else f"all succeeded: {all_ok}"
    if key in ("succeedIndices", "failIndices"):
        items = result.get("items")
        if not isinstance(items, list):
            return "not an append-batch result"
        want = key == "succeedIndices"
        bad = [i for i in expected if i >= len(items) or bool(items[i].get("success")) is not want]
        return None if not bad else f"items {bad} did not {'succeed' if want else 'fail'}"
    return f"unknown expect key {key!r}"
