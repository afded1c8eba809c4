"""The foundation: Identity, durations, exempt paths, MemoryScope, errors."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.authentication import BaseUser

from agenthood_mw import Identity, MemoryScope, current_identity
from agenthood_mw._context import reset_identity, set_identity
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.scope import require_scope
from agenthood_mw._errors import HTTPError


def test_identity_is_a_starlette_user() -> None:
    ident = Identity(user_id="usr_8f3a", tenant="acme", scopes={"agents:run"}, claims={"a": 1})
    assert isinstance(ident, BaseUser)
    assert ident.is_authenticated
    assert ident.display_name == ident.identity == "usr_8f3a"
    assert ident.scopes == frozenset({"agents:run"})
    assert ident.has_scopes("agents:run") and not ident.has_scopes("admin")
    with pytest.raises(TypeError):
        ident.claims["a"] = 2  # type: ignore[index]


def test_anonymous_identity() -> None:
    anon = Identity.anonymous()
    assert not anon.is_authenticated
    assert anon.method == "anonymous"
    with pytest.raises(ValueError, match="non-empty user_id"):
        Identity(user_id="")


def test_current_identity_outside_request_raises() -> None:
    with pytest.raises(LookupError):
        current_identity()
    token = set_identity(Identity(user_id="u1"))
    try:
        assert current_identity().user_id == "u1"
    finally:
        reset_identity(token)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("1h", 3600),
        ("1d", 86400),
        ("2w", 1209600),
        (15, 15),
        ("250ms", 0.25),
        (timedelta(minutes=2), 120),
        ("10", 10),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value, option="window") == seconds


@pytest.mark.parametrize("value", ["", "1y", "-1m", "m", "1 m s", 0, -5, float("inf"), "0s"])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_duration(value, option="window")


@pytest.mark.parametrize("value", [None, True, [1]])
def test_parse_duration_type(value: object) -> None:
    with pytest.raises(TypeError, match="window"):
        parse_duration(value, option="window")


def test_pathset() -> None:
    paths = PathSet(["/health", "/static/*"])
    # Exactly what is configured (issue 11 #6: "/health/" is another route).
    assert "/health" in paths and "/health/" not in paths
    assert "/healthz" not in paths
    assert "/static/" in paths and "/static/a/b" in paths
    assert "/static" not in paths and "/staticfoo" not in paths
    with pytest.raises(TypeError, match="exempt_paths"):
        PathSet("/health")
    with pytest.raises(ValueError, match="exempt_paths"):
        PathSet(["health"])


def test_http_error_body_is_json() -> None:
    err = HTTPError(429, "rate_limited", "Too many requests.", (("retry-after", "3"),))
    body = json.loads(err.body())
    assert body == {"error": {"type": "rate_limited", "message": "Too many requests."}}
    assert ("retry-after", "3") in err.header_pairs(err.body())
    assert err.reason() == "Too Many Requests"


def test_scope_cannot_be_built_directly() -> None:
    with pytest.raises(TypeError, match="for_identity"):
        MemoryScope(None, "alice")
    with pytest.raises(TypeError, match="MemoryScope is required"):
        require_scope("alice")


def test_scope_from_identity() -> None:
    scope = MemoryScope.for_identity(Identity(user_id="usr_8f3a"))
    assert scope.label == "usr_8f3a"
    assert scope.tenant is None
    with pytest.raises(PermissionError):
        MemoryScope.for_identity(Identity.anonymous())
    with pytest.raises(AttributeError):
        scope._user = "bob"  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    ["", "a\x00b", "alice\n", "x" * 257, "e\u0301", "\u202eevil", "a\u2028b"],
)
def test_scope_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        MemoryScope.operator(user=bad)


def test_scope_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        MemoryScope.operator(user=3)  # type: ignore[arg-type]


ADVERSARIAL = [
    "alice",
    "alice_x",
    "aliceX",
    "ALICE",
    "alice.x",
    "alice:x",
    "alice/x",
    "%",
    "_",
    "*",
    "?",
    "[",
    "{x}",
    "a%2Fb",
    "\u00e9",
]


def test_adversarial_scope_keys_are_distinct_and_safe() -> None:
    keys = set()
    for tenant in (None, "t", "t/x"):
        for user in ADVERSARIAL:
            scope = MemoryScope.operator(user=user, tenant=tenant)
            key = scope.storage_key
            assert not set(key) & set("*?[]{}: \\")
            assert key.count("/") == 1
            keys.add(key)
            assert MemoryScope.from_storage_key(key) == scope
    assert len(keys) == 3 * len(ADVERSARIAL)


ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: __import__("unicodedata").is_normalized("NFC", s))


@given(t1=st.none() | ids, u1=ids, t2=st.none() | ids, u2=ids)
def test_storage_key_is_injective_and_reversible(
    t1: str | None, u1: str, t2: str | None, u2: str
) -> None:
    a = MemoryScope.operator(user=u1, tenant=t1)
    b = MemoryScope.operator(user=u2, tenant=t2)
    assert (a.storage_key == b.storage_key) == ((t1, u1) == (t2, u2))
    assert MemoryScope.from_storage_key(a.storage_key) == a
    assert pickle.loads(pickle.dumps(a)) == a
    assert set(a.storage_key) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%/"
    )


@pytest.mark.parametrize("key", ["", "a", "a/b/c", "/%zz", "/a%2", "x/%41"])
def test_from_storage_key_rejects_malformed(key: str) -> None:
    with pytest.raises(ValueError):
        MemoryScope.from_storage_key(key)


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/agents/a/run", "", "/agents/a/run"),
        ("/v1/agents/a/run", "/v1", "/agents/a/run"),
        ("/v1", "/v1", "/"),
        ("/v10/health", "/v1", "/v10/health"),
        ("/other", "/v1", "/other"),
    ],
)
def test_route_path_strips_root_path(path: str, root: str, expected: str) -> None:
    from agenthood_mw._asgi import route_path

    assert route_path({"type": "http", "path": path, "root_path": root}) == expected
