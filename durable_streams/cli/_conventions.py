"""The CLI's conventions, shared by its modules: exit codes and connection settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

__all__ = ["EXIT_CODES", "Settings", "exit_code_for"]

#: Exit codes, as documented in ``durable-streams --help`` and the README.
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_NOT_FOUND = 2
EXIT_CONFLICT = 3
EXIT_NETWORK = 4
EXIT_AUTH = 5
EXIT_FAILED = 6
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_USAGE: "usage error: bad arguments or input (e.g. --json that is not JSON)",
    EXIT_NOT_FOUND: "stream or subscription not found, or gone (404, 410)",
    EXIT_CONFLICT: "conflict: stream closed, exists with another configuration, seq (409)",
    EXIT_NETWORK: "network error or timeout (nothing usable came back)",
    EXIT_AUTH: "unauthorized or forbidden (401, 403)",
    EXIT_FAILED: "any other failure: rejected request, server error, unparsable data",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C) after a clean stop",
}


@dataclass
class Settings:
    """Options every stream command takes (the token is kept out of reprs)."""

    url: str | None = None
    headers: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    timeout: float | None = None
    retries: int | None = None

    def stream_url(self, stream: str) -> str:
        """``stream`` as a URL: a full URL as is, otherwise a path under ``url``."""
        if "://" in stream:
            return stream
        if not self.url:
            raise click.UsageError(
                f"{stream!r} is not a URL: pass --url (or set DURABLE_STREAMS_URL) to the base "
                "its path is relative to, e.g. http://127.0.0.1:4437/v1/stream"
            )
        return self.url.rstrip("/") + "/" + stream.lstrip("/")

    def header_map(self) -> dict[str, str]:
        """``--header`` values and ``--token`` as request headers."""
        found: dict[str, str] = {}
        for raw in self.headers:
            name, sep, value = raw.partition(":")
            if not sep or not name.strip():
                # Never echo it: it may be a credential.
                raise click.UsageError("--header needs 'Name: value' (one has no name or colon)")
            found[name.strip()] = value.strip()
        if self.token:
            found["Authorization"] = f"Bearer {self.token}"
        return found


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error raised by a command."""
    import durable_streams as ds

    if isinstance(error, (ds.NotFoundError, ds.GoneError)):
        return EXIT_NOT_FOUND
    if isinstance(error, ds.ConflictError):
        return EXIT_CONFLICT
    if isinstance(error, ds.TransportError):
        return EXIT_NETWORK
    if isinstance(error, (ds.UnauthorizedError, ds.ForbiddenError)):
        return EXIT_AUTH
    if isinstance(error, (ds.InvalidArgumentError, ds.UsageError)):
        return EXIT_USAGE
    return EXIT_FAILED
