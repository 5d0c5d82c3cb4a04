"""Handing work to an event loop from other threads without waiting for it.

anyio's ``from_thread`` functions wait for the result, a round trip between
threads per call. ``run_soon`` only schedules: the thread goes on at once and
the loop runs the callback in order with everything else scheduled from
threads (asyncio's ``call_soon_threadsafe``, trio's ``run_sync_soon``). The
callback runs outside any task, so it is told which library it runs under,
for the anyio calls it makes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import anyio.lowlevel

try:  # anyio finds the running library through sniffio when it is installed
    from sniffio import current_async_library_cvar as _async_library
except ImportError:  # pragma: no cover - anyio then looks for a running asyncio loop
    _async_library = None  # type: ignore[assignment]

__all__ = ["LoopGoneError", "forks", "mark_async_library", "run_soon"]


class _Forks:
    count = 0  # forks on the way from the importing process to this one


def _count_fork() -> None:
    _Forks.count += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


def forks() -> int:
    """A number that differs in a forked child from its parent's (cheaper than ``os.getpid()``).

    An event loop thread does not survive ``fork()``: what was bound to one in
    the parent compares this number to find out it is in a child.

    Example::

        started_in = forks()
        ...
        if forks() != started_in:
            raise RuntimeError("forked: the loop is in the parent")
    """
    return _Forks.count


class LoopGoneError(RuntimeError):
    """The event loop behind a token is no longer running."""


def mark_async_library(name: str) -> None:
    """In a loop callback (no current task): let anyio calls find the running library."""
    if _async_library is not None:
        _async_library.set(name)


def run_soon(token: anyio.lowlevel.EventLoopToken, func: Callable[[], object]) -> None:
    """Schedule ``func()`` on the event loop of ``token`` and return at once (any thread).

    ``func`` must not raise: nobody would see it but the loop's exception handler.
    Raises :class:`LoopGoneError` if the loop has stopped.

    Example::

        token = anyio.lowlevel.current_token()   # on the loop, earlier
        run_soon(token, lambda: print("on the loop"))
    """
    native = token.native_token
    if isinstance(native, asyncio.AbstractEventLoop):

        def in_asyncio() -> None:
            mark_async_library("asyncio")
            func()

        try:
            native.call_soon_threadsafe(in_asyncio)
        except RuntimeError as error:  # closed
            raise LoopGoneError("the event loop has stopped") from error
        return
    try:  # trio's TrioToken; trio itself tells sniffio it is running
        native.run_sync_soon(func)  # type: ignore[attr-defined]
    except RuntimeError as error:  # trio.RunFinishedError
        raise LoopGoneError("the event loop has stopped") from error
