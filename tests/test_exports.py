"""Pins the public API: adding or removing a public name must be a deliberate change."""

from __future__ import annotations

import agenthood_mw

EXPECTED_TOP_LEVEL = {
    "Identity",
    "MemoryScope",
    "__version__",
    "current_identity",
}


def test_top_level_all_is_pinned() -> None:
    assert set(agenthood_mw.__all__) == EXPECTED_TOP_LEVEL
    assert len(agenthood_mw.__all__) == len(set(agenthood_mw.__all__))


def test_every_exported_name_resolves() -> None:
    for name in agenthood_mw.__all__:
        assert getattr(agenthood_mw, name) is not None, name
