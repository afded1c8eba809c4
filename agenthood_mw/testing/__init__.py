"""Pytest helpers for users of agenthood-mw.

- Token minting for tests: :func:`mint_token`, :func:`bearer_headers`, :func:`generate_keypair`.
- The memory-backend conformance kit: subclass :class:`BackendConformance` and provide its one
  fixture to run the suite the built-in backends pass (see ``docs/memory.md``).

The conformance kit imports pytest and Hypothesis, so it is loaded on first use only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agenthood_mw.testing._tokens import bearer_headers, generate_keypair, mint_token

if TYPE_CHECKING:
    from agenthood_mw.testing._conformance import (
        ADVERSARIAL_IDS,
        ADVERSARIAL_KEYS,
        LEAK_PAIRS,
        NAMESPACE_PAIRS,
        BackendConformance,
        FakeClock,
    )

__all__ = [
    "ADVERSARIAL_IDS",
    "ADVERSARIAL_KEYS",
    "LEAK_PAIRS",
    "NAMESPACE_PAIRS",
    "BackendConformance",
    "FakeClock",
    "bearer_headers",
    "generate_keypair",
    "mint_token",
]

_LAZY = frozenset(
    {
        "ADVERSARIAL_IDS",
        "ADVERSARIAL_KEYS",
        "LEAK_PAIRS",
        "NAMESPACE_PAIRS",
        "BackendConformance",
        "FakeClock",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from agenthood_mw.testing import _conformance

        return getattr(_conformance, name)
    raise AttributeError(f"module 'agenthood_mw.testing' has no attribute {name!r}")
