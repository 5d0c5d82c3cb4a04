"""Keeping secrets and untrusted text out of errors, reprs and logs.

URLs lose their password and every non-protocol query value, credential-bearing
headers lose their values, and untrusted text (response bodies, offsets, content
types) is clipped and has its control characters escaped.

httpx logs every request's full URL at INFO level on the ``httpx`` logger; a
filter there redacts the URLs of the SDK's own requests (and only those), so
turning on logging never prints a token from a stream URL.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx

from . import _protocol as p

__all__ = [
    "BODY_EXCERPT_CHARS",
    "SENDING",
    "SENDING_REQUEST",
    "REDACTED",
    "excerpt",
    "is_secret_header",
    "redact_headers",
    "redact_url",
    "request_secrets",
    "scrub",
    "scrub_exception",
]

BODY_EXCERPT_CHARS = 200
REDACTED = "[REDACTED]"

# Header names whose values are credentials, or may be.
_SECRET_HEADER_WORDS = ("authorization", "cookie", "token", "secret", "key", "password", "auth")


def redact_url(url: str | httpx.URL) -> str:
    """The URL with its user info and every non-protocol query value replaced.

    Query parameters other than ``offset``/``live``/``cursor`` are where
    deployments put tokens, so their values never appear in errors or logs. The
    user name goes too: schemes such as ``https://TOKEN:x-oauth-basic@host`` put
    the secret there.
    """
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{REDACTED}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
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


#: Response headers whose value is a URL: a server may echo the request's token in them.
_URL_HEADERS = frozenset({"location", "content-location", "link", "refresh"})


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with credential-bearing values replaced and URL values redacted."""
    redacted: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if is_secret_header(key):
            redacted[key] = REDACTED
        elif key in _URL_HEADERS:
            redacted[key] = redact_url(value)
        else:
            redacted[key] = value
    return redacted


def request_secrets(request: httpx.Request | None) -> tuple[str, ...]:
    """Every credential ``request`` carries: the URL's user info and non-protocol query
    values, and the values of credential headers (with their ``Basic``/``Bearer`` parts)."""
    if request is None:
        return ()
    found: set[str] = set()
    url = request.url
    if url.password:
        found.add(url.password)
        found.add(base64.b64encode(f"{url.username}:{url.password}".encode()).decode())
    for key, value in url.params.multi_items():
        if key not in p.PROTOCOL_PARAMS and value:
            found.add(value)
    for name, value in request.headers.items():
        if is_secret_header(name) and value:
            found.add(value)
            found.update(part for part in value.split() if len(part) >= 4)
    # Longest first, so a value is replaced whole before any part of it.
    return tuple(sorted((secret for secret in found if len(secret) >= 3), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (and its URL-quoted form) replaced."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
        quoted = quote(secret, safe="")
        if quoted != secret and quoted in text:
            text = text.replace(quoted, REDACTED)
    return text


def scrub_exception(exc: BaseException, request: httpx.Request | None) -> BaseException:
    """Make ``exc`` (an httpx exception kept as a cause) safe to keep: drop the request
    it references and the exceptions it chains (their messages may quote a header
    value), and remove the request's secrets from its message."""
    secrets = request_secrets(request)
    if isinstance(exc, httpx.HTTPError):
        exc.request = None  # type: ignore[assignment]  # httpx's setter; its getter then raises
    exc.args = tuple(scrub(str(arg), secrets) if isinstance(arg, str) else arg for arg in exc.args)
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = True
    return exc


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


#: The request the SDK is sending (set next to ``SENDING``): its credentials are worked
#: out only when httpcore logs something about it, not on every request.
SENDING_REQUEST: ContextVar[httpx.Request | None] = ContextVar(
    "durable_streams_sending_request", default=None
)

# ``(b'Location', b'http://...')`` in httpcore's trace of response headers.
_HEADER_TUPLE = re.compile(r"\(b'([^']*)', b'((?:[^'\\]|\\.)*)'\)")


class _HttpcoreLogRedactor(logging.Filter):
    """Redacts httpcore's DEBUG traces of the SDK's requests: response header values that
    are credentials or URLs, and any credential of the request (in exception texts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not SENDING.get():
            return True
        message = record.getMessage()
        redacted = _HEADER_TUPLE.sub(_redact_header_tuple, message)
        redacted = scrub(redacted, request_secrets(SENDING_REQUEST.get()))
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def _redact_header_tuple(match: re.Match[str]) -> str:
    name = match.group(1)
    value = match.group(2)
    if is_secret_header(name):
        value = REDACTED
    elif name.lower() in _URL_HEADERS:
        value = redact_url(value)
    return f"(b'{name}', b'{value}')"


def _install(name: str, kind: type[logging.Filter]) -> None:
    logger = logging.getLogger(name)
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


_install("httpx", _HttpxLogRedactor)
# httpcore logs on these child loggers; a filter on the parent would not see their records.
for _name in ("connection", "http11", "http2", "proxy", "socks", "connection_pool"):
    _install(f"httpcore.{_name}", _HttpcoreLogRedactor)
