"""The ``validate`` command: build SDK objects from the suite's options, report what is refused."""

from __future__ import annotations

import re
from typing import Any

import httpx
from replies import Command, Failure, Reply

import durable_streams as ds

# RetryPolicy field -> the suite's option name (validate retry-options).
RETRY_FIELDS = {
    "max_attempts": "maxRetries",
    "initial_delay": "initialDelayMs",
    "max_delay": "maxDelayMs",
    "multiplier": "multiplier",
}


def camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def run(command: Command, *, client: httpx.AsyncClient, server_url: str) -> Reply:
    target = command.get("target")
    if not isinstance(target, dict):
        raise Failure("INVALID_ARGUMENT", "validate: target must be an object")
    kind = target.get("target")
    try:
        if kind == "retry-options":
            validate_retry_options(target)
        elif kind == "idempotent-producer":
            validate_producer(target, client=client, server_url=server_url)
        else:
            raise Failure("NOT_SUPPORTED", f"validate: unknown target {kind!r}")
    except ds.InvalidArgumentError as exc:
        names = RETRY_FIELDS if kind == "retry-options" else {}
        name = names.get(exc.field or "", camel(exc.field or ""))
        raise Failure("INVALID_ARGUMENT", f"invalid {name}: {exc}") from None
    return {}


def validate_producer(
    target: dict[str, Any], *, client: httpx.AsyncClient, server_url: str
) -> None:
    options: dict[str, Any] = {}
    for name in ("epoch", "maxBatchBytes", "maxBatchItems", "lingerMs", "maxInFlight"):
        if name in target:
            options[re.sub(r"([A-Z])", r"_\1", name).lower()] = target[name]
    handle = ds.StreamHandle(server_url + "/__validate__", client=client)
    ds.IdempotentProducer(handle, str(target.get("producerId", "validate-producer")), **options)


def validate_retry_options(target: dict[str, Any]) -> None:
    options: dict[str, Any] = {}
    if "maxRetries" in target:
        options["max_attempts"] = target["maxRetries"] + 1
    if "initialDelayMs" in target:
        options["initial_delay"] = target["initialDelayMs"] / 1000
    if "maxDelayMs" in target:
        options["max_delay"] = target["maxDelayMs"] / 1000
    if "multiplier" in target:
        options["multiplier"] = target["multiplier"]
    ds.RetryPolicy(**options)
