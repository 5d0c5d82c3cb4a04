"""JwksCache: the server's webhook signing keys (a JWKS document), fetched and cached.

A webhook names its signing key by ``kid``; the keys are published at
``{root}/__ds/jwks.json`` (the subscription's ``webhook.signing.jwks_url``). The
cache keeps them for the response's ``Cache-Control: max-age`` and refetches once
when a webhook names a key it does not know (a key rotation). Every fetch, whatever
caused it, waits at least ``min_refetch_interval`` after the one before, so forged
requests naming random kids cannot make the receiver hammer the server; concurrent
verifications share one fetch. When a refetch after ``max-age`` fails, the keys of the
last good document keep verifying (with a warning) for up to ``max_stale`` (a day),
so a short outage of the JWKS route does not refuse every webhook.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from durable_streams._errors import (
    DurableStreamError,
    InvalidArgumentError,
    ParseError,
    RequestTimeoutError,
    WebhookVerificationError,
    error_for_exception,
    error_for_response,
)
from durable_streams._redact import redact_url
from durable_streams._transport import error_body, iter_body, new_client, release

if TYPE_CHECKING:  # cryptography comes with the [webhooks] extra: imported when first used
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["JwksCache", "decode_base64url", "signature_holds"]

logger = logging.getLogger("durable_streams.subscriptions")

#: Without ``max-age``, keys are kept this long (the reference server sends 300).
DEFAULT_MAX_AGE = 300.0
#: A longer ``max-age`` is cut to this, so a retired key does not live on for days.
MAX_MAX_AGE = 3600.0
#: The least time between two fetches (and so the shortest cache life).
MIN_REFETCH_INTERVAL = 30.0
#: How long after the last good fetch its keys still verify while refetches fail.
MAX_STALE = 24 * 3600.0
#: A JWKS document is a few hundred bytes; anything past this is refused.
MAX_JWKS_BYTES = 64 * 1024
#: Keys read from one document at most.
MAX_KEYS = 64
#: The whole fetch (connect, send, headers, body) must finish within this.
FETCH_TIMEOUT = 10.0

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


def _ed25519_public_key() -> type[Ed25519PublicKey]:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:
        raise ImportError(
            "verifying webhooks needs the cryptography package (Ed25519): "
            "pip install 'aio-durable-streams[webhooks]'"
        ) from exc
    return Ed25519PublicKey


def signature_holds(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``key``'s Ed25519 signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def decode_base64url(text: str, size: int) -> bytes | None:
    """The ``size`` bytes that unpadded, canonical base64url ``text`` encodes, else None.

    Padding, other alphabets, whitespace and non-canonical encodings (unused low
    bits set) are refused, so each value has exactly one accepted spelling.
    """
    if len(text) != (size * 4 + 2) // 3 or not _BASE64URL.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    return raw


class JwksCache:
    """The webhook signing keys of one server, from its JWKS URL, cached.

    ``await keys.key(kid)`` returns the Ed25519 public key named ``kid``. Keys are
    kept for the response's ``Cache-Control: max-age`` (``default_max_age`` when it
    has none; at least ``min_refetch_interval``, at most ``max_max_age``). An
    unknown ``kid`` refetches the document once, unless the last fetch was less than
    ``min_refetch_interval`` seconds ago; still unknown is a
    :class:`~durable_streams.WebhookVerificationError` with reason ``"unknown_key"``.
    A failed fetch raises the SDK's typed error (``NetworkError``, ``StatusError``,
    ``ParseError`` for a bad document), and until ``min_refetch_interval`` has passed
    the same error is raised again without asking the server. Except for a known
    ``kid`` whose keys have only expired: while refetching fails, the keys of the last
    good fetch are used (logged at WARNING, once per failed fetch) for up to
    ``max_stale`` seconds after that fetch (a day by default; 0 turns this off).

    TLS certificates are verified; pass ``client`` to use your own
    ``httpx.AsyncClient`` (it is not closed here). Build it anywhere (module level
    is fine); use it from one event loop. Example::

        keys = JwksCache("https://streams.example.com/v1/stream/__ds/jwks.json")
        public_key = await keys.key("ds_abc...")
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        default_max_age: float = DEFAULT_MAX_AGE,
        max_max_age: float = MAX_MAX_AGE,
        min_refetch_interval: float = MIN_REFETCH_INTERVAL,
        max_stale: float = MAX_STALE,
        max_bytes: int = MAX_JWKS_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise InvalidArgumentError("JWKS url is not a valid URL", field="url") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidArgumentError("JWKS url must be an http(s) URL", field="url")
        if not 0 <= min_refetch_interval <= default_max_age <= max_max_age:
            raise InvalidArgumentError(
                "need 0 <= min_refetch_interval <= default_max_age <= max_max_age",
                field="min_refetch_interval",
            )
        if not 0 <= max_stale < float("inf"):
            raise InvalidArgumentError("max_stale must be >= 0 seconds", field="max_stale")
        if max_bytes <= 0:
            raise InvalidArgumentError("max_bytes must be positive", field="max_bytes")
        _ed25519_public_key()  # without the [webhooks] extra, say so now, not at the first wake
        self._url = parsed
        self._client = client
        self._default_max_age = default_max_age
        self._max_max_age = max_max_age
        self._min_interval = min_refetch_interval
        self._max_stale = max_stale
        self._max_bytes = max_bytes
        self._clock = clock
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._expires_at = float("-inf")
        self._fetched_at = float("-inf")  # the last good fetch
        self._stale_warned = -1  # the failed fetch (by count) already warned about
        self._last_attempt: float | None = None
        self._last_error: DurableStreamError | None = None
        self._fetches = 0  # fetches ended: tells a waiter whether one ended meanwhile
        # Made on first use, in the event loop that verifies (often not the one, if any,
        # that built this cache: module level, or a test's loop beside a server's thread).
        self._lock: anyio.Lock | None = None

    @property
    def url(self) -> str:
        """The JWKS URL (credentials redacted)."""
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"JwksCache({self.url!r}, keys={sorted(self._keys)!r})"

    async def key(self, kid: str) -> Ed25519PublicKey:
        """The public key named ``kid``: from the cache, or after (at most) one fetch."""
        fetched = False
        if self._clock() >= self._expires_at:
            try:
                await self._refresh()
            except DurableStreamError as exc:
                stale = self._stale_key(kid, exc)
                if stale is None:
                    raise
                return stale
            fetched = True
        key = self._keys.get(kid)
        if key is None and not fetched and self._may_fetch():
            await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise WebhookVerificationError(
                f"webhook signed with an unknown key (kid {kid!r} is not in {self.url})",
                reason="unknown_key",
            )
        return key

    def _stale_key(self, kid: str, failure: DurableStreamError) -> Ed25519PublicKey | None:
        """The expired key ``kid`` while refetching fails, within ``max_stale``; else None."""
        key = self._keys.get(kid)
        age = self._clock() - self._fetched_at
        if key is None or age > self._max_stale:
            return None
        if self._stale_warned != self._fetches:
            self._stale_warned = self._fetches
            logger.warning(
                "cannot refresh the webhook signing keys from %s (%s): using the keys "
                "fetched %.0f s ago (for up to %.0f s)",
                self.url,
                failure,
                age,
                self._max_stale,
            )
        return key

    def _may_fetch(self) -> bool:
        return (
            self._last_attempt is None or self._clock() - self._last_attempt >= self._min_interval
        )

    async def _refresh(self) -> None:
        """Fetch the document, or share the outcome of a fetch that ended meanwhile.

        Rate-limited: within ``min_refetch_interval`` of the last fetch, its outcome
        stands (its error is raised again). A cancelled fetch counts as never started.
        """
        seen = self._fetches
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._fetches != seen or not self._may_fetch():
                if self._last_error is not None:
                    # A fresh traceback each time: the same error may be raised often.
                    raise self._last_error.with_traceback(None)
                return
            previous = self._last_attempt
            self._last_attempt = self._clock()
            try:
                keys, max_age = await self._fetch()
            except DurableStreamError as exc:
                self._last_error = exc
                self._fetches += 1
                raise
            except BaseException:
                self._last_attempt = previous
                raise
            self._keys, self._last_error = keys, None
            self._fetched_at = self._clock()
            self._expires_at = self._fetched_at + max_age
            self._fetches += 1

    async def _fetch(self) -> tuple[dict[str, Ed25519PublicKey], float]:
        operation = "fetch the webhook signing keys (JWKS)"
        client = self._client or new_client(FETCH_TIMEOUT)
        try:
            with anyio.fail_after(FETCH_TIMEOUT):
                request = client.build_request(
                    "GET", self._url, headers={"accept": "application/jwk-set+json"}
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise error_for_exception(exc, operation=operation, url=self._url) from exc
                try:
                    if response.status_code != 200:
                        body = await error_body(response)
                        raise error_for_response(response, operation=operation, body=body)
                    raw = bytearray()
                    async for chunk in iter_body(response, operation, nullcontext):
                        raw += chunk  # inflated in bounded steps, so this cap bounds memory
                        if len(raw) > self._max_bytes:
                            raise ParseError(
                                f"JWKS document from {self.url} is larger than "
                                f"{self._max_bytes} bytes"
                            )
                finally:
                    await release(response)
        except TimeoutError:
            raise RequestTimeoutError(
                f"{operation} timed out after {FETCH_TIMEOUT:g} s at {self.url}", url=self._url
            ) from None
        finally:
            if self._client is None:
                await client.aclose()
        keys = parse_jwks(bytes(raw), where=self.url)
        return keys, self._max_age(response.headers.get("cache-control"))

    def _max_age(self, cache_control: str | None) -> float:
        if not cache_control:
            return self._default_max_age
        if _NO_CACHE.search(cache_control):
            return self._min_interval
        match = _MAX_AGE.search(cache_control)
        age = float(match.group(1)) if match else self._default_max_age
        return min(max(age, self._min_interval), self._max_max_age)


def parse_jwks(raw: bytes, *, where: str) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 signing keys of a JWKS document by ``kid``; :class:`ParseError` if it is bad.

    Keys of other types (RSA, EC, X25519) are skipped. An Ed25519 key must be a
    public signing key: ``x`` is the canonical unpadded base64url of 32 bytes, a
    non-empty ``kid``, ``use`` (if any) ``"sig"``, ``alg`` (if any) ``"EdDSA"`` or
    ``"Ed25519"``, and no private part ``d``. Duplicate kids are refused.
    """

    def bad(problem: str) -> ParseError:
        return ParseError(f"bad JWKS document from {where}: {problem}")

    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise bad('not an object with a "keys" array')
    entries: list[Any] = document["keys"]
    if len(entries) > MAX_KEYS:
        raise bad(f"more than {MAX_KEYS} keys")
    keys: dict[str, Ed25519PublicKey] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad(f"key {index} is not an object")
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        kid, key = _ed25519_key(entry, index, bad)
        if kid in keys:
            raise bad(f"key {index}: duplicate kid")
        keys[kid] = key
    return keys


def _ed25519_key(
    entry: Mapping[str, Any], index: int, bad: Callable[[str], ParseError]
) -> tuple[str, Ed25519PublicKey]:
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise bad(f"key {index}: kid must be a non-empty string")
    if "d" in entry:
        raise bad(f"key {index}: a private key is published")
    if entry.get("use", "sig") != "sig":
        raise bad(f"key {index}: use must be 'sig'")
    if entry.get("alg", "EdDSA") not in ("EdDSA", "Ed25519"):
        raise bad(f"key {index}: alg must be EdDSA")
    x = entry.get("x")
    raw = decode_base64url(x, 32) if isinstance(x, str) else None
    if raw is None:
        raise bad(f"key {index}: x must be the unpadded base64url of 32 bytes")
    try:
        return kid, _ed25519_public_key().from_public_bytes(raw)
    except ValueError:
        raise bad(f"key {index}: x is not an Ed25519 public key") from None
