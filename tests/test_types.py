"""Unit tests of ``_types.py``: what hooks return."""

from __future__ import annotations

from durable_streams import RetryWith


def test_retry_with_never_shows_its_values() -> None:
    retry = RetryWith(headers={"authorization": "Bearer SECRET"}, params={"token": "SECRET"})
    assert "SECRET" not in repr(retry)
    assert "SECRET" not in str(retry)
    assert repr(retry) == "RetryWith(headers=['authorization'], params=['token'])"
