"""Keeping secrets and untrusted text out of errors, reprs and logs.

URLs lose their password and every non-protocol query value, credential-bearing
headers lose their values, and untrusted text (response bodies, offsets, content
types) is clipped and has its control characters escaped.

httpx logs every request's full URL at INFO level on the ``httpx`` logger; a
filter there redacts the URLs of the SDK's own requests (and only those), so
turning on logging never prints a token from a stream URL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx

from . import _protocol as p

__all__ = [
    "BODY_EXCERPT_CHARS",
    "SENDING",
    "REDACTED",
    "excerpt",
    "is_secret_header",
    "redact_headers",
    "redact_url",
]

BODY_EXCERPT_CHARS = 200
REDACTED = "[REDACTED]"

# Header names whose values are credentials, or may be.
_SECRET_HEADER_WORDS = ("authorization", "cookie", "token", "secret", "key", "password", "auth")


def redact_url(url: str | httpx.URL) -> str:
    """The URL with its password and every non-protocol query value replaced.

    Query parameters other than ``offset``/``live``/``cursor`` are where
    deployments put tokens, so their values never appear in errors or logs.
    """
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='') if k in p.PROTOCOL_PARAMS else REDACTED}"
            for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with credential-bearing values replaced."""
    return {k.lower(): (REDACTED if is_secret_header(k) else v) for k, v in headers.items()}


def excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """A short, log-safe excerpt of untrusted text: control characters escaped."""
    clipped = text[:limit]
    safe = clipped.encode("unicode_escape", "backslashreplace").decode("ascii")
    return safe + ("…" if len(text) > limit else "")


#: Set (``SENDING.set(True)``, then ``reset``) while the SDK sends a request: httpx
#: logs from inside that call, in the same context. A bare set/reset rather than a
#: context manager: it runs on every request.
SENDING: ContextVar[bool] = ContextVar("durable_streams_sending", default=False)


class _HttpxLogRedactor(logging.Filter):
    """Redacts the URLs in httpx's log records for requests the SDK sends."""

    def filter(self, record: logging.LogRecord) -> bool:
        if SENDING.get() and isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(arg) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _HttpxLogRedactor) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_HttpxLogRedactor())
