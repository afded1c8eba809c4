"""``MemoryScope.label`` is the one textual rendering of a scope: unambiguous and reversible."""

from __future__ import annotations

import unicodedata

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw import MemoryScope
from agenthood_mw.api import AgenthoodAPI, OfflineProvider
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import CostEstimator, MemoryLedger, MemoryTraceStore

_REFUSED = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
# Mostly the characters that matter (separator, escape char, escape look-alikes), some others.
_chars = st.one_of(
    st.sampled_from("/%2F5a"),
    st.characters(exclude_categories=_REFUSED),  # type: ignore[arg-type]
)
parts = st.text(_chars, min_size=1, max_size=12).filter(
    lambda t: unicodedata.is_normalized("NFC", t)
)
scopes = st.builds(
    lambda user, tenant: MemoryScope.operator(user=user, tenant=tenant),
    parts,
    st.none() | parts,
)


@given(scopes)
def test_label_round_trips(scope: MemoryScope) -> None:
    back = MemoryScope.from_label(scope.label)
    assert back == scope and back.tenant == scope.tenant and back.user == scope.user


@given(scopes, scopes)
def test_distinct_scopes_have_distinct_labels(a: MemoryScope, b: MemoryScope) -> None:
    assert (a.label == b.label) == (a == b)


def test_label_examples() -> None:
    assert MemoryScope.operator(user="usr_8f3a").label == "usr_8f3a"
    assert MemoryScope.operator(user="usr_8f3a", tenant="acme").label == "acme/usr_8f3a"
    tenantless = MemoryScope.operator(user="t1/u")
    tenant_user = MemoryScope.operator(user="u", tenant="t1")
    assert tenantless.label == "t1%2Fu" and tenant_user.label == "t1/u"
    assert MemoryScope.operator(user="a%2Fb").label == "a%252Fb"
    assert MemoryScope.operator(user="%", tenant="%/").label == "%25%2F/%25"
    assert MemoryScope.operator(user="caf\u00e9 user").label == "caf\u00e9 user"


@pytest.mark.parametrize(
    "bad", ["", "/", "/u", "t/", "a/b/c", "%", "a%", "%41", "a%2f", "%2", "a\x00b", "e\u0301"]
)
def test_from_label_refuses_what_no_scope_renders(bad: str) -> None:
    with pytest.raises(ValueError):
        MemoryScope.from_label(bad)


def test_from_label_needs_text() -> None:
    with pytest.raises(TypeError):
        MemoryScope.from_label(b"usr")  # type: ignore[arg-type]


async def test_responses_traces_and_reports_tell_the_two_customers_apart() -> None:
    """A tenantless ``t1/u`` and user ``u`` of tenant ``t1``: two customers, two labels."""
    secret = "label-secret-" + "x" * 40
    ledger, traces = MemoryLedger(), MemoryTraceStore()
    api = AgenthoodAPI(
        agents=demo_agents(),
        memory={"isolation": "per-user", "backend": InMemoryBackend()},
        provider=OfflineProvider(),
        ledger=ledger,
        traces=traces,
    )
    api.add_middleware(AuthMiddleware, strategy="jwt", secret=secret, audience="agenthood-api")
    callers = {
        MemoryScope.operator(user="t1/u"): {},
        MemoryScope.operator(user="u", tenant="t1"): {"tenant": "t1"},
    }
    labels = {}
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for scope, claims in callers.items():
            jwt = mint_token(secret=secret, user_id=scope.user, **claims)
            r = await c.post(
                "/agents/the-developer/run",
                json={"task": "refactor the auth middleware"},
                headers={"authorization": f"Bearer {jwt}"},
            )
            assert r.status_code == 200, r.text
            labels[scope] = r.json()["memoryScope"]
            assert MemoryScope.from_label(labels[scope]) == scope
            run = r.json()["runId"]
            trace = await traces.get(scope, run)
            assert trace is not None and trace["memoryScope"] == labels[scope]
    await api.flush()
    assert sorted(labels.values()) == ["t1%2Fu", "t1/u"]
    spend = await CostEstimator(ledger).spend("user")
    assert sorted(s.subject for s in spend) == ["t1%2Fu", "t1/u"]
    assert all(MemoryScope.from_label(s.subject) == s.scope for s in spend)
    await api.aclose()
