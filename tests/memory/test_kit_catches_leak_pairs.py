"""The conformance kit's peer-leak cases fail on backends with those peers' bugs."""

from __future__ import annotations

import pytest

from agenthood_mw.memory import InMemoryBackend, MemoryScope
from agenthood_mw.memory._inmemory import _ScopeData
from agenthood_mw.testing._conformance import BackendConformance


class PunctuationFoldedScopes(InMemoryBackend):
    """Stores ``john-doe`` and ``john_doe`` together (a wildcard/normalising lookup)."""

    def _data(self, scope: MemoryScope, create: bool) -> _ScopeData | None:
        tenant = None if scope.tenant is None else scope.tenant.replace("-", "_")
        folded = MemoryScope.operator(user=scope.user.replace("-", "_"), tenant=tenant)
        return super()._data(folded, create)


class PrefixScopes(InMemoryBackend):
    """Finds a scope by prefix: ``foobar`` and ``acme-corp`` land in ``foo`` and ``acme``."""

    def _data(self, scope: MemoryScope, create: bool) -> _ScopeData | None:
        for known in list(self._scopes):
            if scope.storage_key.startswith(known):
                return self._scopes[known]
        return super()._data(scope, create)


@pytest.mark.parametrize("cls", [PunctuationFoldedScopes, PrefixScopes])
async def test_peer_leak_pairs_catch(cls: type[InMemoryBackend]) -> None:
    with pytest.raises(AssertionError):
        await BackendConformance().test_peer_leak_pairs_stay_apart(lambda clock: cls(clock=clock))


@pytest.mark.parametrize("cls", [PunctuationFoldedScopes, PrefixScopes])
async def test_store_boundaries_catch(cls: type[InMemoryBackend]) -> None:
    pytest.importorskip("langgraph.store.base")
    with pytest.raises(AssertionError):
        await BackendConformance().test_langgraph_store_namespace_boundaries(
            lambda clock: cls(clock=clock)
        )
