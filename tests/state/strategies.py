"""Hypothesis strategies for state messages, shared by the state tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Keys include non-ASCII text: keys travel as JSON strings and must survive as such.
KEYS = st.sampled_from(["a", "b", "c", "ключ", "鍵", "🔑", "a b", "x/y"])
TYPES = st.sampled_from(["user", "message", "presence"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def changes(draw: st.DrawFn) -> dict[str, Any]:
    """One valid change message (values are any JSON)."""
    operation = draw(st.sampled_from(["insert", "update", "upsert", "delete"]))
    headers: dict[str, Any] = {"operation": operation}
    if draw(st.booleans()):
        headers["txid"] = draw(st.sampled_from(["t1", "t2", "t3"]))
    message: dict[str, Any] = {"type": draw(TYPES), "key": draw(KEYS), "headers": headers}
    if operation != "delete" or draw(st.booleans()):
        message["value"] = draw(JSON_VALUES)
    return message


RESET = {"headers": {"control": "reset"}}
MARKERS = st.sampled_from(
    [{"headers": {"control": "snapshot-start"}}, {"headers": {"control": "snapshot-end"}}]
)
INVALID = st.sampled_from(
    [
        {"type": "user", "key": "a", "headers": {"operation": "insert"}},  # no value
        {"type": "", "key": "a", "value": 1, "headers": {"operation": "update"}},
        {"type": "user", "key": "a", "value": 1, "headers": {"operation": "merge"}},
        {"type": "user", "key": "a", "value": 1},
        {"headers": {"control": "rewind"}},
        {"type": "user", "key": 7, "value": 1, "headers": {"operation": "upsert"}},
        {"type": "user", "key": "a", "value": 1, "headers": {"operation": "upsert", "txid": ""}},
        [1, 2],
        "text",
        None,
    ]
)

#: A state stream as a reader may meet it: mostly changes, some controls, a few invalid items.
STREAMS = st.lists(
    st.one_of(changes(), changes(), changes(), st.just(RESET), MARKERS, INVALID), max_size=40
)
