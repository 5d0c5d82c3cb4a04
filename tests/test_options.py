"""Unit tests of ``_options.py``: validating and formatting user options."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from durable_streams import InvalidArgumentError
from durable_streams._options import (
    check_content_type,
    create_headers,
    format_expires_at,
    format_seq,
    parse_expires_at,
)


def headers(**kw: object) -> dict[str, str]:
    options: dict[str, object] = {
        "content_type": None,
        "ttl": None,
        "expires_at": None,
        "closed": False,
        "forked_from": None,
        "fork_offset": None,
        "fork_sub_offset": None,
    }
    options.update(kw)
    return create_headers(**options)  # type: ignore[arg-type]


def test_a_plain_create_defaults_to_octet_stream_and_a_fork_inherits() -> None:
    assert headers() == {"content-type": "application/octet-stream"}
    forked = headers(forked_from="/v1/stream/source", fork_offset="0000_0005")
    assert "content-type" not in forked
    assert forked["stream-forked-from"] == "/v1/stream/source"
    assert forked["stream-fork-offset"] == "0000_0005"


def test_a_fork_source_given_as_a_url_is_sent_as_its_path() -> None:
    forked = headers(forked_from="http://host:4437/v1/stream/source?tenant=a")
    assert forked["stream-forked-from"] == "/v1/stream/source?tenant=a"


def test_ttl_expiry_and_closed() -> None:
    assert headers(ttl=60)["stream-ttl"] == "60"
    assert headers(closed=True)["stream-closed"] == "true"
    with pytest.raises(InvalidArgumentError, match="either ttl or expires_at"):
        headers(ttl=1, expires_at="2030-01-01T00:00:00Z")
    with pytest.raises(InvalidArgumentError):
        headers(ttl=-1)


def test_expires_at_has_one_canonical_form() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678900, tzinfo=timezone(timedelta(hours=2)))
    assert format_expires_at(moment) == "2030-01-02T01:04:05.678Z"
    assert format_expires_at("2030-01-01T00:00:00Z") == "2030-01-01T00:00:00Z"
    with pytest.raises(InvalidArgumentError, match="timezone-aware"):
        format_expires_at(datetime(2030, 1, 1))  # naive: the point of the test
    with pytest.raises(InvalidArgumentError):
        format_expires_at("")
    with pytest.raises(InvalidArgumentError):
        format_expires_at(12)  # type: ignore[arg-type]


def test_parse_expires_at_tolerates_what_it_cannot_read() -> None:
    assert parse_expires_at("2030-01-02T01:04:05.678Z") == datetime(
        2030, 1, 2, 1, 4, 5, 678000, tzinfo=timezone.utc
    )
    assert parse_expires_at(None) is None
    assert parse_expires_at("tomorrow") is None


def test_integer_seqs_are_zero_padded_to_sort_bytewise() -> None:
    assert format_seq(9) == "0000000000000009"
    assert format_seq(10) > format_seq(9)
    assert format_seq("custom-7") == "custom-7"
    with pytest.raises(InvalidArgumentError):
        format_seq(-1)
    with pytest.raises(InvalidArgumentError):
        format_seq("")


@pytest.mark.parametrize("value", ["", "  ", "text/plain\r\nx-injected: 1", 7])
def test_content_types_that_cannot_be_sent_are_refused(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="content_type"):
        check_content_type(value)  # type: ignore[arg-type]


def test_content_type_passes_through() -> None:
    assert check_content_type(None) is None
    assert check_content_type("application/json; charset=utf-8") == (
        "application/json; charset=utf-8"
    )
