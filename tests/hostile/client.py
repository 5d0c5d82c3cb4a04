"""The client side of a hostile case: runs one public-API call in this process and reports.

Run as ``python -m tests.hostile.client '<json spec>'``, or as a fork server
(``--serve``): it imports everything once, then for each spec line on stdin
forks a child that runs the case as a fresh interpreter would (warm-up, peak
reset, the call, the report), its stdout and stderr in the files the spec
names, and answers ``<pid>`` then ``done <exit status>``.

The last line of the case's stdout is a JSON report: the outcome (result
summary, or the exception's type, code, status and message), peak RSS growth
(VmHWM after resetting it), CPU time, wall time, and every place a secret
showed up: the error's str/repr, its whole ``__cause__``/``__context__`` chain
and traceback, and the DEBUG logs of
``durable_streams``, ``httpx`` and ``httpcore``.
"""

from __future__ import annotations

import json
import logging
import os
import pydoc
import resource
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import durable_streams as ds


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class _Scanner(logging.Handler):
    """Counts log records and keeps the ones that contain a secret."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.secrets = secrets
        self.records = 0
        self.leaks: list[str] = []
        self.sample: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = f"{record.name}: {record.getMessage()}"
        except Exception as exc:
            text = f"{record.name}: unformattable {exc!r}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if len(self.sample) < 40:
            self.sample.append(text[:300])
        if any(secret in text for secret in self.secrets) and len(self.leaks) < 5:
            self.leaks.append(text[:500])


def _chain(error: BaseException) -> list[BaseException]:
    """The error, its causes and contexts, and group members, each once."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        exc = todo.pop()
        if any(exc is s for s in seen):
            continue
        seen.append(exc)
        for linked in (exc.__cause__, exc.__context__):
            if linked is not None:
                todo.append(linked)
        members = getattr(exc, "exceptions", None)  # an exception group
        if isinstance(members, tuple):
            todo.extend(m for m in members if isinstance(m, BaseException))
    return seen


def _error_texts(error: BaseException) -> list[tuple[str, str]]:
    texts = [("traceback", "".join(traceback.format_exception(error)))]
    for exc in _chain(error):
        name = type(exc).__name__
        texts.append((f"str({name})", str(exc)))
        texts.append((f"repr({name})", repr(exc)))
        texts.append((f"args({name})", repr(exc.args)))
        for key, value in vars(exc).items():
            texts.append((f"{name}.{key}", repr(value)))
    return texts


def _describe(error: BaseException) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "mro": [cls.__name__ for cls in type(error).__mro__],
        "typed": isinstance(error, ds.DurableStreamError),
        "code": getattr(error, "code", None),
        "status": getattr(error, "status", None),
        "message": str(error)[:2000],
        "repr": repr(error)[:2000],
        "retry_after": getattr(error, "retry_after", None),
        "headers": getattr(error, "headers", None),
        "field": getattr(error, "field", None),
        "cause": type(error.__cause__).__name__ if error.__cause__ is not None else None,
        "chain": [type(exc).__name__ for exc in _chain(error)],
    }


def _handle(spec: dict[str, Any]) -> ds.StreamHandle:
    return ds.StreamHandle(spec["url"], **_handle_kwargs(spec))


def _handle_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(spec.get("handle") or {})
    if "retry" in kwargs:
        kwargs["retry"] = ds.RetryPolicy(**kwargs["retry"])
    if "limits" in kwargs:
        kwargs["limits"] = ds.ReadLimits(**kwargs["limits"])
    return kwargs


class _Summary:
    """What a read delivered, kept small (counts, the last offsets, the first items)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.items = 0
        self.batches = 0
        self.first: list[Any] = []
        self.offsets: list[str] = []

    def add_items(self, items: list[Any]) -> None:
        self.items += len(items)
        if len(self.first) < 5:
            self.first.extend(items[: 5 - len(self.first)])

    def as_dict(self, res: Any) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "items": self.items,
            "batches": self.batches,
            "first": self.first,
            "offsets": self.offsets[-5:],
            "offset": getattr(res, "offset", None),
            "closed": getattr(res, "closed", None),
        }


async def _read(spec: dict[str, Any], args: dict[str, Any]) -> Any:
    how = args.get("how", "batches")
    read_kwargs = dict(args.get("read_kwargs") or {})
    if "limits" in read_kwargs:
        read_kwargs["limits"] = ds.ReadLimits(**read_kwargs["limits"])
    summary = _Summary()
    async with _handle(spec) as handle:
        res = await handle.stream(
            offset=args.get("offset", "-1"), live=args.get("live", False), **read_kwargs
        )
        async with res:
            with anyio.move_on_after(args.get("stop_after", 1e9)) as scope:
                if how == "batches":
                    async for batch in res:
                        summary.batches += 1
                        summary.bytes += len(batch.data)
                        summary.offsets.append(batch.offset)
                        if batch._items is not None:
                            summary.add_items(batch.items)
                elif how in ("body", "text"):
                    data = await (res.body() if how == "body" else res.text())
                    summary.bytes = len(data)
                elif how == "json":
                    value = await res.json()
                    summary.add_items(value if isinstance(value, list) else [value])
                elif how in ("iter_bytes", "iter_text"):
                    iterator = res.iter_bytes() if how == "iter_bytes" else res.iter_text()
                    async for chunk in iterator:
                        summary.bytes += len(chunk)
                elif how == "iter_json":
                    async for item in res.iter_json():
                        summary.add_items([item])
                else:
                    raise AssertionError(f"unknown read {how}")
            result = summary.as_dict(res)
            result["stopped"] = scope.cancelled_caught
            return result


async def _producer(spec: dict[str, Any], args: dict[str, Any]) -> Any:
    async with _handle(spec) as handle:
        producer = ds.IdempotentProducer(handle, "p1", **args.get("producer", {}))
        async with producer:
            for n in range(args.get("items", 3)):
                producer.append({"n": n})
            await producer.flush()
        return {"epoch": producer.epoch, "next_seq": producer.next_seq}


async def _call(spec: dict[str, Any], args: dict[str, Any]) -> Any:
    """One handle method: ``args['method']`` with ``args['kwargs']``."""
    async with _handle(spec) as handle:
        if args.get("after_aclose"):
            await handle.aclose()
        method = getattr(handle, args["method"])
        outcome = method(*args.get("args", []), **args.get("kwargs", {}))
        if args["method"] == "stream":
            async with outcome as res:
                return {"offset": res.offset}
        value = await outcome
        return value.model_dump(mode="json") if hasattr(value, "model_dump") else repr(value)


async def _construct(spec: dict[str, Any], args: dict[str, Any]) -> Any:
    handle = _handle(spec)
    await handle.aclose()
    return repr(handle)


async def _help(spec: dict[str, Any], args: dict[str, Any]) -> Any:
    return pydoc.render_doc(eval(args["target"], {"ds": ds}), renderer=pydoc.plaintext)  # type: ignore[attr-defined]


ACTIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Awaitable[Any]]] = {
    "read": _read,
    "producer": _producer,
    "call": _call,
    "construct": _construct,
    "help": _help,
}


def main() -> None:
    if sys.argv[1] == "--serve":
        serve()
    else:
        run_case(json.loads(sys.argv[1]))


def serve() -> None:
    """Fork a child per spec line on stdin: the imports are paid once, not per case."""
    for line in sys.stdin:
        spec = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: one case, then exit without running the parent's cleanup
            status = 1
            try:
                with open(spec["stdout"], "w") as out, open(spec["stderr"], "w") as err:
                    os.dup2(out.fileno(), 1)
                    os.dup2(err.fileno(), 2)
                    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                    run_case(spec)
                    sys.stdout.flush()
                    status = 0
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(status)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"done {os.waitstatus_to_exitcode(status)}", flush=True)


def run_case(spec: dict[str, Any]) -> None:
    secrets: list[str] = spec.get("secrets", [])
    scanner = _Scanner(secrets)
    for name in ("durable_streams", "httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(scanner)
    action = ACTIONS[spec["action"]]
    args = spec.get("args", {})
    outcome: dict[str, Any] = {}

    async def run() -> None:
        with anyio.fail_after(spec.get("guard", 20)):
            try:
                outcome["result"] = await action(spec, args)
                outcome["ok"] = True
            except TimeoutError:
                raise
            except BaseException as error:
                outcome["ok"] = False
                outcome["exception"] = error

    async def warm_up() -> None:
        # Creating a client loads the CA bundle (several MiB): not the case's memory.
        async with ds.new_client():
            pass

    anyio.run(warm_up, backend=spec.get("backend", "asyncio"))
    resettable = _reset_peak()
    rss_start = _status_kib("VmRSS")
    hwm_start = _status_kib("VmHWM")
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    guard_hit = False
    try:
        anyio.run(run, backend=spec.get("backend", "asyncio"))
    except TimeoutError:
        guard_hit = True
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    hwm_end = _status_kib("VmHWM")
    leaks: list[str] = [f"log: {line}" for line in scanner.leaks]
    report: dict[str, Any] = {
        "ok": outcome.get("ok", False),
        "guard_hit": guard_hit,
        "result": outcome.get("result"),
        "error": None,
        "rss_growth_mib": (hwm_end - (rss_start if resettable else hwm_start)) / 1024,
        "cpu_s": (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime),
        "wall_s": wall,
        "log_records": scanner.records,
        "log_sample": scanner.sample,
    }
    error = outcome.get("exception")
    if error is not None:
        report["error"] = _describe(error)
        for where, text in _error_texts(error):
            if any(secret in text for secret in secrets):
                leaks.append(f"{where}: {text[:500]}")
    report["leaks"] = leaks
    if spec.get("show_result") is False:
        report["result"] = None
    print(json.dumps(report, default=repr))


if __name__ == "__main__":
    main()
