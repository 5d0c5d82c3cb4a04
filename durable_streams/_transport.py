"""The HTTP layer shared by handles, readers and producers.

A :class:`Transport` is one stream URL plus everything needed to send requests
to it: the pooled ``httpx.AsyncClient``, user headers and query parameters
(static or callables evaluated on every request), timeouts and the retry
policy. This module also reads response bodies (whole, capped, or chunk by
chunk) and releases responses. It is the only layer that sees httpx
exceptions: it turns them into the SDK's typed errors.
"""

from __future__ import annotations

import inspect
import re
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import anyio
import httpx

from . import _protocol as p
from . import _telemetry
from ._errors import (
    DurableStreamError,
    InvalidArgumentError,
    NetworkError,
    ParseError,
    RequestTimeoutError,
    UsageError,
    error_for_exception,
    error_for_response,
)
from ._redact import SENDING, SENDING_REQUEST, excerpt, redact_url
from ._retry import RetryPolicy
from ._types import HeadersArg, ParamsArg, ValueSource

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "Interruptible",
    "Transport",
    "error_body",
    "iter_body",
    "new_client",
    "read_body",
    "release",
]

#: Bodies of non-streamed responses (writes, HEAD, errors) are cut after this many bytes.
MAX_BUFFERED_BODY = 1024 * 1024
#: Bytes of an error response read for the error message.
ERROR_BODY_BYTES = 4096
#: Protocol versions of responses the SDK reads (``response.http_version``).
HTTP_VERSIONS = frozenset({"HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"})

Interruptible: TypeAlias = Callable[[], AbstractContextManager[None]]
"""Wraps each network wait, so a reader can be ended from another task."""

#: Finite connect/write/pool timeouts; the read timeout outlasts a server's
#: long-poll (30 s on the reference server) and SSE keep-alives (30 s) with margin.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=65.0, write=30.0, pool=30.0)

#: Live readers each hold a connection, so the pool is not capped; idle
#: connections are dropped before common servers' 5 s keep-alive timeout, to
#: avoid sending on a socket the server is closing.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=None, max_keepalive_connections=100, keepalive_expiry=4.0
)


def new_client(timeout: httpx.Timeout | float | None = None) -> httpx.AsyncClient:
    """A pooled client configured the way the SDK's own clients are (TLS verification on)."""
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        limits=DEFAULT_LIMITS,
        follow_redirects=False,
    )


class _Values:
    """Header or parameter sources, split so static-only sets cost one dict copy."""

    __slots__ = ("dynamic", "headers", "static")

    def __init__(self, values: Mapping[str, ValueSource] | None, *, lower: bool) -> None:
        self.static: dict[str, str] = {}
        self.dynamic: dict[str, Callable[[], str | Awaitable[str]]] = {}
        self.headers = lower
        if values is not None and not isinstance(values, Mapping):
            raise InvalidArgumentError(
                f"expected a mapping of names to values, not {type(values).__name__}",
                field="headers" if lower else "params",
            )
        for name, value in (values or {}).items():
            if not isinstance(name, str) or not name:
                raise InvalidArgumentError(f"invalid name {name!r}: names are non-empty str")
            if lower and not is_header_name(name):
                raise InvalidArgumentError(f"invalid header name {name!r}", field=name)
            key = name.lower() if lower else name
            if isinstance(value, str):
                self.static[key] = self._checked(key, value)
            elif callable(value):
                self.dynamic[key] = value
            else:
                raise InvalidArgumentError(
                    f"value of {name!r} must be a str or a callable returning one, "
                    f"not {type(value).__name__}",
                    field=name,
                )

    async def resolve(self) -> dict[str, str]:
        if not self.dynamic:
            return self.static.copy()
        resolved = self.static.copy()
        for name, source in self.dynamic.items():
            value = source()
            if inspect.isawaitable(value):
                value = await value
            if not isinstance(value, str):
                raise InvalidArgumentError(
                    f"callable for {name!r} returned {type(value).__name__}, expected str",
                    field=name,
                )
            resolved[name] = self._checked(name, value)
        return resolved

    def _checked(self, name: str, value: str) -> str:
        # The value itself is never shown: it may be a credential.
        if self.headers and not is_header_value(value):
            raise InvalidArgumentError(
                f"value of header {name!r} must be printable ASCII without line breaks",
                field=name,
            )
        return value

    def __bool__(self) -> bool:
        return bool(self.static or self.dynamic)


# Full matches: "$" would also match before a trailing "\n", letting a line break through.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def is_header_name(name: str) -> bool:
    """A token (RFC 9110): no space, colon, CR, LF or NUL anywhere."""
    return _HEADER_NAME.fullmatch(name) is not None


def is_header_value(value: str) -> bool:
    """Printable ASCII and tabs only: no CR, LF or NUL anywhere (no header injection)."""
    return _HEADER_VALUE.fullmatch(value) is not None


def _timeout(value: object) -> httpx.Timeout | None:
    """The ``timeout=`` argument as an httpx.Timeout: None keeps the client's own."""
    if value is None or isinstance(value, httpx.Timeout):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return httpx.Timeout(float(value))
    raise InvalidArgumentError(
        "timeout must be a positive number of seconds or an httpx.Timeout", field="timeout"
    )


def encode_query(params: Mapping[str, str]) -> str:
    """``key=value`` pairs sorted by key (stable cache keys), every value percent-encoded."""
    return "&".join(
        f"{quote(key, safe='')}={quote(params[key], safe='')}" for key in sorted(params)
    )


def check_url(url: object) -> tuple[str, httpx.URL]:
    """``url`` as a string and parsed, if it is an absolute http(s) URL httpx can send to."""
    if isinstance(url, httpx.URL):
        url = str(url)
    if not isinstance(url, str):
        raise InvalidArgumentError(
            f"stream URL must be a str, not {type(url).__name__}", field="url"
        )
    problem = _url_problem(url)
    parsed: httpx.URL | None = None
    if problem is None:
        try:
            parsed = httpx.URL(url)
            if not parsed.host:
                problem = "it has no host"
        except (ValueError, TypeError, OverflowError, httpx.InvalidURL):
            # httpx's message may quote the URL, password included: never shown.
            problem = "httpx cannot parse it"
    if problem is not None or parsed is None:
        raise InvalidArgumentError(
            f"invalid stream URL {_safe_url(url)}: {problem}; expected an absolute "
            "http(s) URL such as http://127.0.0.1:4437/v1/stream/name",
            field="url",
        )
    return url, parsed


def _url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a stream URL, or None (checked before httpx parses it)."""
    if not url.isprintable() or any(c in url for c in " \t\r\n\x00"):
        return "it contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number in 0-65535
    except ValueError:
        return "its port is not a number from 1 to 65535"
    if parts.scheme not in ("http", "https"):
        return "its scheme is not http or https"
    if not parts.hostname:
        return "it has no host"
    if port == 0:
        return "its port is not a number from 1 to 65535"
    return None


def _safe_url(url: str) -> str:
    """``url`` for a message: redacted, and clipped/escaped when it is not even a URL."""
    try:
        return excerpt(redact_url(url), 200)
    except Exception:
        return "<unparsable URL>"


class Transport:
    """Sends requests to one stream URL. Shared by a handle and its readers/producers."""

    __slots__ = (
        "_base_params",
        "_base_url",
        "_headers",
        "_params",
        "_parsed_base_url",
        "client",
        "owns_client",
        "retry",
        "timeout",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None,
        headers: HeadersArg,
        params: ParamsArg,
        timeout: httpx.Timeout | float | None,
        retry: RetryPolicy | None,
    ) -> None:
        self._set_url(*check_url(url))
        self._headers = _Values(headers, lower=True)
        self._params = _Values(params, lower=False)
        self.timeout: httpx.Timeout | None = _timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError("retry must be a RetryPolicy", field="retry")
        if client is not None and not isinstance(client, httpx.AsyncClient):
            raise InvalidArgumentError("client must be an httpx.AsyncClient", field="client")
        self.retry = retry if retry is not None else RetryPolicy()
        self.owns_client = client is None
        self.client = client if client is not None else new_client(self.timeout)
        _telemetry.load()  # OpenTelemetry, if installed: imported once, here, not per request

    def _set_url(self, url: str, parsed: httpx.URL) -> None:
        parts = urlsplit(url)
        self.url = url
        # Query parameters in the URL itself join the sorted query of every request.
        self._base_url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
        self._base_params = dict(parse_qsl(parts.query, keep_blank_values=True))
        # Without a query, the parse that validated the URL is also the request URL.
        self._parsed_base_url: httpx.URL | None = parsed if url == self._base_url else None

    async def build(
        self,
        method: str,
        *,
        protocol_headers: Mapping[str, str] | None = None,
        protocol_params: Mapping[str, str] | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        content: bytes | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        """Build a request: user headers/params first, protocol values always win."""
        merged_headers = await self._headers.resolve()
        if headers:
            merged_headers.update(await _Values(headers, lower=True).resolve())
        if protocol_headers:
            merged_headers.update(protocol_headers)

        url: str | httpx.URL = self._base_url
        if not (self._base_params or self._params or params or protocol_params):
            # Appends, heads and closes all go to the bare URL: parse it once, not per
            # request (httpx's URL parsing is about a third of building a request).
            if self._parsed_base_url is None:
                self._parsed_base_url = httpx.URL(self._base_url)
            url = self._parsed_base_url
        else:
            query = dict(self._base_params)
            if self._params:
                query.update(await self._params.resolve())
            if params:
                query.update(await _Values(params, lower=False).resolve())
            if protocol_params:
                query.update(protocol_params)
            if query:
                url = f"{url}?{encode_query(query)}"
        timeout = timeout if timeout is not None else self.timeout
        try:
            if timeout is None:
                return self.client.build_request(
                    method, url, headers=merged_headers, content=content
                )
            return self.client.build_request(
                method, url, headers=merged_headers, content=content, timeout=timeout
            )
        except (httpx.InvalidURL, UnicodeEncodeError) as exc:
            # A user-supplied value (a content type, a URL) httpx cannot put on the wire.
            raise InvalidArgumentError(
                f"cannot build the {method} request to {redact_url(self.url)}: {exc}"
            ) from None
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, operation=method, url=self.url) from None

    async def send(
        self,
        request: httpx.Request,
        *,
        operation: str,
        stream: bool = False,
        resend_count: int = 0,
    ) -> httpx.Response:
        """Send ``request``; transport failures become typed errors, statuses are not checked.

        With ``stream=False`` the body is read, keeping at most the first
        ``MAX_BUFFERED_BODY`` bytes; use ``stream=True`` for reads of stream data.
        ``resend_count``: earlier attempts of this request (for its trace span).
        """
        if self.client.is_closed:
            raise UsageError(
                f"{operation} failed: the handle's HTTP client is closed (the handle was "
                "closed with aclose() or its async with block ended); open a new StreamHandle",
                url=request.url,
            )
        deadline = header_deadline(request)
        failure: DurableStreamError | None = None
        otel = _telemetry.OTEL
        # One span per attempt when OpenTelemetry is installed; else one `is None` check.
        attempt = (
            otel.start_request(request, resend_count or _telemetry.RESEND_COUNT.get())
            if otel is not None
            else None
        )
        try:
            # httpx's and httpcore's log lines for this request are redacted.
            sending = SENDING.set(True)
            sending_request = SENDING_REQUEST.set(request)
            try:
                # httpx's timeouts apply per socket operation: a server sending its
                # headers a byte at a time would never trip them. One deadline covers
                # the whole header phase.
                with anyio.fail_after(deadline):
                    response = await self.client.send(request, stream=True)
            finally:
                SENDING_REQUEST.reset(sending_request)
                SENDING.reset(sending)
            if response.http_version not in HTTP_VERSIONS:
                # h11 parses any "HTTP/d.d" status line; another major version means
                # another message syntax, which the rest of the response cannot be read as.
                await release(response)
                raise NetworkError(
                    f"{operation} failed: the server answered in "
                    f"{excerpt(response.http_version, 40)}, not HTTP/1.x, HTTP/2 or HTTP/3, "
                    f"at {redact_url(request.url)}",
                    url=request.url,
                )
            if stream:
                if attempt is not None:  # a streamed body is read later: its declared size
                    attempt.end(
                        response, body_size=p.header_int(response.headers, "content-length")
                    )
                return response
            try:
                body = await _read_capped(response, MAX_BUFFERED_BODY, operation)
            finally:
                await response.aclose()
        except TimeoutError:
            failure = RequestTimeoutError(
                f"{operation} timed out: no complete response headers within {deadline:g}s "
                f"(the sum of the connect, write and read timeouts) from {redact_url(request.url)}",
                url=request.url,
            )
        except httpx.HTTPError as exc:
            failure = error_for_exception(exc, operation=operation, url=request.url)
        except BaseException as error:
            if attempt is not None:
                attempt.end(error=error)
            raise
        if failure is not None:
            if attempt is not None:
                attempt.end(error=failure)
            # Raised outside the except block: the httpx exception (scrubbed) is the
            # cause, and no unscrubbed exception hangs on as __context__.
            raise failure
        if attempt is not None:
            attempt.end(response, body_size=response.num_bytes_downloaded)
        # A hostile server cannot make a write-path response use unbounded memory: these
        # responses carry no data, and error bodies are only excerpted. The capped body
        # becomes the content of an equivalent, fully read response.
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            request=request,
            extensions=response.extensions,
        )

    async def request(
        self,
        method: str,
        *,
        operation: str,
        ok: tuple[int, ...] = (200, 201, 204),
        protocol_headers: Mapping[str, str] | None = None,
        protocol_params: Mapping[str, str] | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        content: bytes | None = None,
        sent_stream_seq: bool = False,
        resend_count: int = 0,
    ) -> httpx.Response:
        """Build, send and check one request (no retry); the body is read.

        ``resend_count``: earlier attempts of this request (for its trace span).
        """
        request = await self.build(
            method,
            protocol_headers=protocol_headers,
            protocol_params=protocol_params,
            headers=headers,
            params=params,
            content=content,
        )
        response = await self.send(request, operation=operation, resend_count=resend_count)
        if response.status_code not in ok:
            raise error_for_response(
                response,
                operation=operation,
                body=response.content,
                sent_stream_seq=sent_stream_seq,
                is_read=method == "GET",
                is_create=method == "PUT",
            )
        return response

    async def aclose(self) -> None:
        """Close the HTTP client if this transport created it."""
        if self.owns_client:
            await self.client.aclose()


# -- response bodies ------------------------------------------------------------------------

#: Most bytes one decompression step produces: a compressed body is inflated in steps of
#: this size, so a 64 KiB read of a gzip bomb never becomes 64 MiB at once.
DECODE_STEP = 256 * 1024
#: Decoded bytes of a compressed body before its ratio is checked, unless the caller
#: says otherwise (reads use ``max_body_bytes``: within it, any ratio is fine).
RATIO_GRACE_BYTES = 1024 * 1024

#: Bytes after the end of a compressed body that are dropped rather than refused.
MAX_TRAILING_BYTES = 64 * 1024

_IDENTITY = ("", "identity")
_INFLATED = ("gzip", "x-gzip", "deflate")


async def iter_body(
    response: httpx.Response,
    operation: str,
    interruptible: Interruptible,
    *,
    max_ratio: float | None = None,
    ratio_after: int = RATIO_GRACE_BYTES,
    step: int = DECODE_STEP,
) -> AsyncGenerator[bytes, None]:
    """The decoded body chunk by chunk, with httpx failures turned into typed (retryable) errors.

    gzip and deflate bodies are inflated here, ``DECODE_STEP`` bytes at a time
    (httpx would inflate each received chunk whole); past ``ratio_after``
    decoded, more than ``max_ratio`` decoded bytes per compressed byte is a
    :class:`ParseError` naming ``max_decompression_ratio``. Identity bodies are
    handed out as received, without a copy.
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if response.is_stream_consumed:  # already read (a mock): httpx decoded it whole
        if response.content:
            yield response.content
        return
    inflater: _Inflater | None = None
    if encoding in _IDENTITY:
        chunks = response.aiter_raw()  # the data as received: no decoder, no copy
    elif encoding in _INFLATED:
        inflater = _Inflater(encoding, max_ratio, response.request.url, step, ratio_after)
        chunks = response.aiter_raw()
    else:
        # Encodings the SDK does not ask for (br, zstd, layered ones): httpx decodes them
        # when it can, a received chunk at a time; the ratio is checked after each.
        chunks = response.aiter_bytes()
    decoded = 0
    while True:
        try:
            with interruptible():
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            break
        except (httpx.HTTPError, httpx.StreamError) as exc:
            raise error_for_exception(exc, operation=operation, url=response.request.url) from exc
        if inflater is not None:
            out = inflater.inflate(chunk)
            while True:
                if out:
                    yield out
                if not inflater.pending:
                    break
                out = inflater.inflate(b"")
            continue
        if encoding not in _IDENTITY and max_ratio is not None:
            decoded += len(chunk)
            check_ratio(
                decoded, response.num_bytes_downloaded, max_ratio, ratio_after, response.request.url
            )
        yield chunk
    if inflater is not None:
        for part in inflater.finish():
            yield part


class _Inflater:
    """Inflates one gzip/deflate body in bounded steps, checking the ratio as it goes."""

    __slots__ = (
        "_decoder",
        "_deflate",
        "_max_ratio",
        "_ratio_after",
        "_step",
        "_tail",
        "_trailing",
        "consumed",
        "decoded",
        "pending",
        "url",
    )

    def __init__(
        self,
        encoding: str,
        max_ratio: float | None,
        url: httpx.URL,
        step: int = DECODE_STEP,
        ratio_after: int = RATIO_GRACE_BYTES,
    ) -> None:
        self._deflate = encoding == "deflate"
        # gzip: header and trailer checked; deflate: zlib-wrapped, or raw (tried on failure).
        wbits = zlib.MAX_WBITS if self._deflate else zlib.MAX_WBITS | 16
        self._decoder: Any = zlib.decompressobj(wbits)
        self._max_ratio = max_ratio
        self._ratio_after = ratio_after
        self._step = step
        self._trailing = 0  # bytes received after the end of the compressed data
        self._tail = b""  # compressed input a step left over
        self.pending = False  # a step stopped at ``step`` bytes: more may come without input
        self.consumed = 0  # compressed bytes inflated so far
        self.decoded = 0
        self.url = url

    def inflate(self, data: bytes) -> bytes:
        """One decompression step: at most ``step`` decoded bytes of ``data`` (and of what
        earlier steps left). While :attr:`pending`, call again with ``b""``.

        Bytes after the end of the compressed data are dropped, as httpx does (the
        body is still read to its end, so the connection can be reused), up to
        ``MAX_TRAILING_BYTES``.
        """
        decoder = self._decoder
        if decoder.eof:
            self._after_end(len(data))
            self.pending = False
            return b""
        if self._tail:
            data = self._tail + data
        try:
            out: bytes = decoder.decompress(data, self._step)
        except zlib.error as exc:
            if self._deflate and not self.consumed and not self.decoded:
                # Some servers send raw deflate under "deflate": try that once.
                self._deflate = False
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.inflate(data)
            raise self._corrupt(exc) from None
        tail = self._tail = decoder.unconsumed_tail
        self.consumed += len(data) - len(tail)
        if out:
            self.decoded += len(out)
            if self._max_ratio is not None and self.decoded > self._ratio_after:
                check_ratio(
                    self.decoded, self.consumed, self._max_ratio, self._ratio_after, self.url
                )
        if decoder.eof:
            self._after_end(len(decoder.unused_data))
            self.pending = False
        else:
            self.pending = bool(tail) or len(out) == self._step
        return out

    def _after_end(self, size: int) -> None:
        self._trailing += size
        if self._trailing > MAX_TRAILING_BYTES:
            raise ParseError(
                f"compressed read response goes on for more than {MAX_TRAILING_BYTES} "
                "bytes after the end of its compressed data",
                url=self.url,
            )

    def finish(self) -> Iterator[bytes]:
        """What the decoder still holds once the body ended."""
        try:
            out = self._decoder.flush(self._step)
        except zlib.error as exc:
            raise self._corrupt(exc) from None
        while out:
            self.decoded += len(out)
            self._check_ratio()
            yield out
            if len(out) < self._step:
                return
            out = self._decoder.decompress(b"", self._step)

    def _check_ratio(self) -> None:
        if self._max_ratio is not None:
            check_ratio(self.decoded, self.consumed, self._max_ratio, self._ratio_after, self.url)

    def _corrupt(self, exc: zlib.error) -> ParseError:
        return ParseError(
            f"compressed read response is not valid gzip/deflate data: {exc}", url=self.url
        )


def check_ratio(decoded: int, consumed: int, max_ratio: float, after: int, url: httpx.URL) -> None:
    """Refuse a compressed body that inflated more than ``max_ratio`` past ``after`` bytes."""
    if decoded <= after or decoded <= max_ratio * consumed:
        return
    raise ParseError(
        f"compressed read response inflates more than max_decompression_ratio={max_ratio:g} "
        f"({decoded} bytes from {consumed}): a decompression bomb, or data so repetitive "
        "that ReadLimits(max_decompression_ratio=...) must be raised to read it",
        url=url,
    )


async def read_body(
    response: httpx.Response,
    operation: str,
    interruptible: Interruptible,
    *,
    limit: int | None = None,
    max_ratio: float | None = None,
    ratio_after: int = RATIO_GRACE_BYTES,
) -> bytes:
    """The whole body, with httpx failures turned into typed (retryable) errors.

    More than ``limit`` decoded bytes is a :class:`ParseError` naming
    ``max_body_bytes``, raised as soon as the limit is passed.
    """
    buffer = bytearray()  # grown in place: one copy of the body, not a list plus a join
    chunks = iter_body(
        response, operation, interruptible, max_ratio=max_ratio, ratio_after=ratio_after
    )
    async for chunk in capped(chunks, limit, url=response.request.url):
        buffer += chunk
    return bytes(buffer)


async def capped(
    chunks: AsyncIterator[bytes], limit: int | None, *, url: str | httpx.URL
) -> AsyncGenerator[bytes, None]:
    """``chunks``, raising :class:`ParseError` once more than ``limit`` bytes came."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if limit is not None and size > limit:
            raise body_too_large(limit, url=url)
        yield chunk


def body_too_large(limit: int, *, url: str | httpx.URL) -> ParseError:
    """The error of a whole-response read past ``ReadLimits.max_body_bytes``."""
    return ParseError(
        f"read response is larger than max_body_bytes={limit}: whole-response reads "
        "(async for batch, body(), text(), json()) hold it in memory; use iter_bytes() or "
        "iter_json() to stream any size, or raise ReadLimits(max_body_bytes=...)",
        url=url,
    )


async def error_body(response: httpx.Response) -> bytes:
    """The start of an error response's body (enough for the message), then release it."""
    buffer = bytearray()
    try:
        chunks = iter_body(response, "read the error response", nullcontext, step=ERROR_BODY_BYTES)
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= ERROR_BODY_BYTES:
                break
    except DurableStreamError:
        pass  # what arrived is enough for the message
    finally:
        await release(response)
    return bytes(buffer[:ERROR_BODY_BYTES])


async def release(response: httpx.Response) -> None:
    """Close ``response``, giving its connection back to the pool."""
    # Shielded: a cancelled reader must still give its connection back.
    with anyio.CancelScope(shield=True):
        await response.aclose()


def header_deadline(request: httpx.Request) -> float:
    """Seconds allowed from sending ``request`` to having all response headers.

    The connect, write and read timeouts of the request added up (a live request's
    read timeout already outlasts the server's wait); pool waits are bounded by
    httpx's pool timeout on their own. A phase without a timeout means no deadline.
    """
    timeouts = request.extensions.get("timeout") or {}
    total = 0.0
    for phase in ("connect", "write", "read"):
        value = timeouts.get(phase)
        if value is None:
            return float("inf")  # the caller turned this timeout off: so is the deadline
        total += float(value)
    return max(total, 0.001)


async def _read_capped(response: httpx.Response, limit: int, operation: str) -> bytes:
    """At most ``limit`` decoded bytes of the body (a compressed one is inflated in steps)."""
    buffer = bytearray()
    async for chunk in iter_body(response, operation, nullcontext):
        buffer += chunk
        if len(buffer) >= limit:
            break
    return bytes(buffer[:limit])


def response_flag(headers: httpx.Headers, name: str) -> bool:
    """A boolean protocol header of a response (only ``true`` counts)."""
    return p.flag(headers.get(name))
