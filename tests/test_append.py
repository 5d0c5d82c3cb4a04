"""Unit tests of ``_append.py``: which failed plain appends provably stored nothing."""

from __future__ import annotations

import httpx
import pytest

from durable_streams import (
    DurableStreamError,
    NetworkError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
)
from durable_streams._append import proves_not_applied
from durable_streams._errors import error_for_exception

URL = "http://streams.test/v1/stream/s"
REQUEST = httpx.Request("POST", URL)


def transport_error(exc: Exception) -> DurableStreamError:
    return error_for_exception(exc, operation="append", url=URL)


@pytest.mark.parametrize(
    ("error", "proven"),
    [
        # Refused before anything was sent: nothing can have been stored.
        (transport_error(httpx.ConnectError("refused", request=REQUEST)), True),
        (transport_error(httpx.ConnectTimeout("slow", request=REQUEST)), True),
        (transport_error(httpx.PoolTimeout("busy", request=REQUEST)), True),
        (RateLimitedError("429", status=429), True),
        (ServerError("503", status=503), True),
        # Sent, then lost: the server may have stored it.
        (transport_error(httpx.ReadError("reset", request=REQUEST)), False),
        (transport_error(httpx.ReadTimeout("slow", request=REQUEST)), False),
        (transport_error(httpx.RemoteProtocolError("cut", request=REQUEST)), False),
        (ServerError("500", status=500), False),
        (ServerError("502", status=502), False),
        (NetworkError("no cause"), False),
        (RequestTimeoutError("no cause"), False),
    ],
)
def test_only_failures_before_the_request_left_prove_nothing_was_stored(
    error: DurableStreamError, proven: bool
) -> None:
    assert proves_not_applied(error) is proven
