"""One key scheme (:mod:`agenthood_mw._core.keys`): every per-subject key derives from a
``MemoryScope``, and distinct scopes and rules never give equal keys."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.authentication import SimpleUser

from agenthood_mw import Identity, MemoryScope
from agenthood_mw._core import keys
from agenthood_mw._core.ratelimit import identity_key
from agenthood_mw._core.scope import ANONYMOUS_TENANT

#: Text that stresses the encoding: every delimiter the key formats use, and beyond ASCII.
_ALPHABET = string.ascii_letters + string.digits + ":|/%{}*?[]-._~ éü€"
parts = st.text(_ALPHABET, min_size=1, max_size=12).filter(lambda s: s.strip() == s)


def _scope(tenant: str | None, user: str) -> MemoryScope | None:
    try:
        return MemoryScope.operator(user=user, tenant=tenant)
    except ValueError:
        return None


subjects = st.builds(_scope, st.none() | parts, parts).filter(lambda s: s is not None)
rules = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}(:[A-Za-z0-9%]{1,6})?", fullmatch=True)


def every_key(scope: MemoryScope, rule: str) -> dict[str, str]:
    return {
        "subject": keys.subject_key(scope),
        "token rate": keys.token_rate_key(scope),
        "rate limit": keys.rate_limit_key(keys.rate_limit_subject(scope), rule),
    }


@given(a=subjects, b=subjects, rule_a=rules, rule_b=rules)
def test_distinct_scopes_and_rules_never_give_equal_keys(
    a: MemoryScope, b: MemoryScope, rule_a: str, rule_b: str
) -> None:
    ka, kb = every_key(a, rule_a), every_key(b, rule_b)
    # Keys of different kinds never meet, whatever the scopes and rules.
    for kind_a, key_a in ka.items():
        for kind_b, key_b in kb.items():
            if kind_a != kind_b:
                assert key_a != key_b, (kind_a, kind_b)
    for kind in ka:
        same_input = a == b and (kind != "rate limit" or rule_a == rule_b)
        assert (ka[kind] == kb[kind]) is same_input, kind
    # A custom key (operator's key= callable) never equals a scope's.
    assert keys.custom_subject(a.user) != keys.rate_limit_subject(b)


@given(a=subjects, b=subjects)
def test_keys_round_trip_to_their_scope(a: MemoryScope, b: MemoryScope) -> None:
    assert MemoryScope.from_storage_key(keys.subject_key(a)) == a
    token = keys.token_rate_key(a)
    assert MemoryScope.from_storage_key(token.removeprefix(keys.TOKEN_RATE_PREFIX)) == a
    assert (keys.rate_limit_subject(a) == keys.rate_limit_subject(b)) is (a == b)


def test_anonymous_callers_never_share_a_key_with_an_identity() -> None:
    anon = keys.anonymous_scope("192.0.2.1")
    assert anon.tenant == ANONYMOUS_TENANT and anon.user == "192.0.2.1"
    # No identity can claim the anonymous tenant: it has no scope, so no key of its own.
    claimed = Identity(user_id="192.0.2.1", tenant=ANONYMOUS_TENANT)
    assert keys.scope_of(claimed) is None
    assert identity_key(claimed) is None
    # A client text that cannot name a scope still gets a (shared, anonymous) subject.
    assert keys.anonymous_scope("a\x00b").user == keys.UNNAMED_CLIENT


def test_scope_of_any_authenticated_user() -> None:
    alice = Identity(user_id="alice", tenant="acme")
    assert keys.scope_of(alice) == MemoryScope.for_identity(alice)
    assert keys.scope_of(SimpleUser("bob")) == MemoryScope.operator(user="bob")
    assert keys.scope_of(Identity.anonymous()) is None
    assert keys.scope_of(None) is None
    assert identity_key(alice) == "u:acme/alice"


def test_the_metering_token_rate_key_comes_from_this_module() -> None:
    from agenthood_mw import CostMeterMiddleware, PriceTable

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError

    mw = CostMeterMiddleware(
        app, prices=PriceTable({"m": {"input": "1", "output": "1"}}), tokens_per_minute=10
    )
    scope = MemoryScope.operator(user="u", tenant="t")
    assert mw.engine.tpm_key(scope) == keys.token_rate_key(scope)  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [None, "t/u", 42])
def test_scope_less_calls_raise(bad: object) -> None:
    with pytest.raises(TypeError):
        keys.subject_key(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        keys.token_rate_key(bad)  # type: ignore[arg-type]
