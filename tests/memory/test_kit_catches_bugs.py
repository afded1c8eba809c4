"""The conformance kit itself: it must fail on backends with classic isolation bugs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings

from agenthood_mw.memory import InMemoryBackend, MemoryBackend, MemoryScope, Record, Tier
from agenthood_mw.memory._errors import ScopeViolationError
from agenthood_mw.memory._inmemory import _ScopeData
from agenthood_mw.testing._conformance import BackendConformance


class CaseInsensitiveScopes(InMemoryBackend):
    """Namespaces by a case-folded label, so ``alice`` and ``ALICE`` share memory."""

    def _data(self, scope: MemoryScope, create: bool) -> _ScopeData | None:
        folded = MemoryScope.operator(user=scope.user.lower(), tenant=scope.tenant)
        return super()._data(folded, create)


class EraseKeepsEvents(InMemoryBackend):
    """``erase`` forgets the facts and documents but leaves the episodic log behind."""

    async def _erase(self, scope: MemoryScope) -> int:
        data = self._data(scope, False)
        if data is None:
            return 0
        count = len(data.kv["facts"]) + len(data.kv["project"])
        data.kv = {"facts": {}, "project": {}}
        data.order = {"facts": [], "project": []}
        return count


class LikePrefix(InMemoryBackend):
    """Treats the list prefix like SQL ``LIKE prefix%`` (``_`` matches any character)."""

    async def _list(
        self,
        scope: MemoryScope,
        tier: Tier,
        prefix: str,
        upper: str | None,
        after: str | None,
        limit: int,
        now: float,
    ) -> Sequence[Record]:
        rows = await super()._list(scope, tier, "", None, after, 10_000, now)

        def like(key: str) -> bool:
            return len(key) >= len(prefix) and all(
                p == "_" or p == k for p, k in zip(prefix, key, strict=False)
            )

        return [r for r in rows if like(r.key)][:limit]


class _Kit(BackendConformance):
    stateful_settings: ClassVar[settings] = settings(
        max_examples=300,
        stateful_step_count=40,
        deadline=None,
        phases=[Phase.generate],
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def factory(cls: type[InMemoryBackend]) -> Callable[[Callable[[], float]], MemoryBackend]:
    return lambda clock: cls(clock=clock)


async def test_kit_catches_merged_scopes() -> None:
    with pytest.raises(AssertionError):
        await _Kit().test_adversarial_scopes_are_isolated(factory(CaseInsensitiveScopes))


async def test_kit_catches_incomplete_erase() -> None:
    with pytest.raises(AssertionError):
        await _Kit().test_erase_and_export(factory(EraseKeepsEvents))


async def test_kit_catches_pattern_prefixes() -> None:
    with pytest.raises(ScopeViolationError):
        await _Kit().test_adversarial_keys_are_literal(factory(LikePrefix))


@pytest.mark.parametrize("cls", [CaseInsensitiveScopes])
def test_stateful_machine_catches_bugs(cls: type[InMemoryBackend]) -> None:
    with pytest.raises(AssertionError):
        _Kit().test_stateful_against_a_dict_model(factory(cls))
