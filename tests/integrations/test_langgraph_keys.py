"""The namespace encoding of ScopedStore: reversible, and prefix-true only on whole segments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("langgraph.store.base")

from agenthood_mw.integrations.langgraph import _keys

# Segments drawn to hit the separators and escapes: '/', ':', '%', '-', '_', '.', non-ASCII.
segment = st.text(alphabet=st.sampled_from(list("ab/:%-_.~ 2F\u00e9\U0001d538")), min_size=1)
namespace = st.lists(segment, min_size=1, max_size=4).map(tuple)
key = st.text(alphabet=st.sampled_from(list("k/:%-_ 3A")), max_size=6)


@given(namespace, key)
def test_roundtrip(ns: tuple[str, ...], k: str) -> None:
    encoded = _keys.encode(ns, k)
    assert encoded.isascii() and encoded.isprintable()
    assert _keys.decode(encoded) == (ns, k)


@given(namespace, namespace, key, key)
def test_distinct_pairs_have_distinct_keys(
    ns1: tuple[str, ...], ns2: tuple[str, ...], k1: str, k2: str
) -> None:
    assert (_keys.encode(ns1, k1) == _keys.encode(ns2, k2)) == ((ns1, k1) == (ns2, k2))


@given(namespace, namespace, key)
def test_prefix_scan_matches_whole_segments_only(
    prefix: tuple[str, ...], ns: tuple[str, ...], k: str
) -> None:
    in_range = _keys.encode(ns, k).startswith(_keys.namespace_prefix(prefix))
    assert in_range == (ns[: len(prefix)] == prefix)


@pytest.mark.parametrize(
    "text",
    [
        "langgraph/%61/:k",  # 'a' escaped: not canonical
        "langgraph/a%2f/:k",  # lower-case escape: not canonical
        "langgraph/a/:%ZZ",
        "langgraph/a/:%C3",  # truncated UTF-8
        "langgraph/:k",  # empty namespace
        "langgraph/a//:k",  # empty segment
        "langgraph/a/k",  # no key marker
        "langgraph/a:k",
        "other/a/:k",
    ],
)
def test_non_canonical_keys_do_not_decode(text: str) -> None:
    assert _keys.decode(text) is None
