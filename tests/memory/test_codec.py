"""The pure encodings every backend relies on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw.memory import InvalidCursorError, InvalidKeyError
from agenthood_mw.memory._codec import (
    decode_event_cursor,
    decode_key_cursor,
    encode_event_cursor,
    encode_key_cursor,
    event_sort_key,
    new_event_id,
    prefix_upper_bound,
    search_terms,
    search_text,
    validate_key,
)

keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12
)
small = st.text(alphabet=["a", "b", "%", "_", "\U0010ffff", "\ud7ff", "\ue000", "é"], max_size=5)


@given(prefix=small | keys, key=small | keys)
def test_prefix_range_is_exactly_startswith(prefix: str, key: str) -> None:
    upper = prefix_upper_bound(prefix)
    in_range = prefix <= key and (upper is None or key < upper)
    assert in_range == key.startswith(prefix)
    # code-point order is UTF-8 byte order, which SQLite/PostgreSQL "C"/Redis compare
    assert (prefix.encode() <= key.encode()) == (prefix <= key)


@given(key=keys)
def test_key_cursor_roundtrip(key: str) -> None:
    cursor = encode_key_cursor(validate_key(key))
    assert decode_key_cursor(cursor) == key
    assert cursor.isascii() and "{" not in cursor and "*" not in cursor


@given(a=st.floats(min_value=0, max_value=1e12), b=st.floats(min_value=0, max_value=1e12))
def test_event_sort_key_preserves_order(a: float, b: float) -> None:
    ia, ib = new_event_id(), new_event_id()
    assert (event_sort_key(a, ia) < event_sort_key(b, ib)) == ((a, ia) < (b, ib))
    assert decode_event_cursor(encode_event_cursor(a, ia)) == (a + 0.0, ia)


@pytest.mark.parametrize("cursor", ["", "zz", "0" * 39, "g" * 40, "f" * 40, None])
def test_bad_event_cursors(cursor: object) -> None:
    with pytest.raises(InvalidCursorError):
        decode_event_cursor(cursor)


def test_search_text_and_terms() -> None:
    text = search_text("Key", {"Name": "Straße", "n": 3, "ok": True, "none": None, "l": ["x\ny"]})
    assert text == "key name strasse n 3 ok none l x y"  # booleans and null are not text
    assert search_terms("  Alice  ALICE bob ") == ("alice", "bob")
    with pytest.raises(ValueError, match="term"):
        search_terms(" \t ")
    with pytest.raises(TypeError):
        search_terms(3)


def test_keys_are_not_normalised() -> None:
    assert validate_key("e\u0301") != validate_key("\u00e9")
    with pytest.raises(InvalidKeyError, match="control"):
        validate_key("a\u2028b")
