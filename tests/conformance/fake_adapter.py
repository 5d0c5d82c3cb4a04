"""A deliberately broken adapter, to prove the runner fails the cases it should.

Modes (first argument):
- ``error``: answers ``init`` properly, every other command with an error;
- ``wrong``: answers every command with success and wrong data;
- ``hang``: answers ``init``, then never replies.
"""

from __future__ import annotations

import json
import sys
import time

FEATURES = dict.fromkeys(
    [
        *("batching", "sse", "longPoll", "auto", "streaming", "dynamicHeaders"),
        *("retryOptions", "batchItems", "strictZeroValidation"),
    ],
    True,
)


def answer(mode: str, command: dict[str, object]) -> dict[str, object] | None:
    kind = str(command.get("type"))
    if kind == "init":
        return {"type": "init", "success": True, "clientName": "fake", "clientVersion": "0"}
    if kind == "shutdown":
        return {"type": "shutdown", "success": True}
    if mode == "hang":
        return None
    if mode == "error":
        return {
            "type": "error",
            "success": False,
            "commandType": kind,
            "errorCode": "INTERNAL_ERROR",
            "message": "broken on purpose",
        }
    return {
        "type": kind,
        "success": True,
        "status": 201 if kind == "create" else 200,
        "offset": "0000000000000000_0000000000000000",
        "chunks": [{"data": "wrong data"}],
        "upToDate": False,
        "streamClosed": False,
        "contentType": "application/x-wrong",
        "finalOffset": "",
    }


def main() -> None:
    mode = sys.argv[1]
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        reply = answer(mode, command)
        if reply is None:
            time.sleep(3600)
        if reply is not None and command.get("type") == "init":
            reply["features"] = FEATURES
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if command.get("type") == "shutdown":
            return


if __name__ == "__main__":
    main()
