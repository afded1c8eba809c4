"""The sans-I/O core, driven directly: header rules, cache policy, key format, JWKS policy."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw._core import apikeys
from agenthood_mw._core.authcore import (
    Challenges,
    Credential,
    InvalidCredential,
    MalformedRequest,
    MissingCredential,
    TokenCache,
    extract_credential,
)
from agenthood_mw._core.jwt import JWKSKeys, algorithm_family
from agenthood_mw.testing._tokens import generate_keypair


def test_extract_bearer() -> None:
    assert extract_credential([b"Bearer abc.def.ghi"]) == Credential("abc.def.ghi", "authorization")
    assert extract_credential([b"bearer abc"]) == Credential("abc", "authorization")
    assert extract_credential([], [b"ah_x"], api_key_source="x-api-key") == Credential(
        "ah_x", "x-api-key"
    )
    assert extract_credential([], []) is None


@pytest.mark.parametrize(
    ("authorization", "api_key", "error"),
    [
        ([b"Bearer a", b"Bearer a"], [], MalformedRequest),
        ([b"Bearer a"], [b"ah_x"], MalformedRequest),
        ([], [b"a", b"b"], MalformedRequest),
        ([b"Bearer"], [], MalformedRequest),
        ([b"Bearer "], [], MalformedRequest),
        ([b"Bearer a b"], [], MalformedRequest),
        ([b"Bearer a, Bearer b"], [], MalformedRequest),
        ([b"Basic a, Bearer b"], [], MalformedRequest),
        ([b"Bearer \xff\xfe"], [], MalformedRequest),
        ([b"Basic dXNlcjpwYXNz"], [], MissingCredential),
        ([b"Token abc"], [], MissingCredential),
        ([b"Bearer " + b"a" * 9000], [], InvalidCredential),
    ],
)
def test_extract_refuses(
    authorization: list[bytes], api_key: list[bytes], error: type[Exception]
) -> None:
    with pytest.raises(error):
        extract_credential(authorization, api_key)


@given(st.binary(max_size=300))
def test_extract_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(MalformedRequest, MissingCredential, InvalidCredential):
        extract_credential([raw])


def test_credential_repr_hides_token() -> None:
    assert "secret" not in repr(Credential("secret", "authorization"))


def test_token_cache_never_outlives_exp_and_is_bounded() -> None:
    now = [1000.0]
    cache: TokenCache[str] = TokenCache(2, threadsafe=True, clock=lambda: now[0])
    cache.put(b"a", "A", 1010.0)
    cache.put(b"gone", "G", 999.0)  # already expired: not stored
    assert cache.get(b"a") == "A" and cache.get(b"gone") is None
    now[0] = 1010.0
    assert cache.get(b"a") is None  # exactly at exp: gone
    for i in range(5):
        cache.put(str(i).encode(), str(i), 2000.0)
    assert len(cache) == 2
    assert cache.get(b"3") == "3" and cache.get(b"4") == "4"
    # An expired entry at the head of the queue is dropped by the next put.
    fifo: TokenCache[str] = TokenCache(10, threadsafe=False, clock=lambda: now[0])
    fifo.put(b"old", "O", now[0] + 1)
    fifo.put(b"new", "N", now[0] + 100)
    now[0] += 2
    fifo.put(b"newer", "N2", now[0] + 100)
    assert b"old" not in fifo._cache  # type: ignore[operator]
    assert len(fifo) == 2
    disabled: TokenCache[str] = TokenCache(0, threadsafe=False)
    disabled.put(b"a", "A", 1e12)
    assert disabled.get(b"a") is None


def test_challenges() -> None:
    c = Challenges("my api")
    assert c.missing.headers == (("www-authenticate", 'Bearer realm="my api"'),)
    assert c.invalid_token.status == 401 and c.malformed.status == 400
    err = c.insufficient_scope({"b", "a"})
    assert err.status == 403 and 'scope="a b"' in dict(err.headers)["www-authenticate"]
    assert json.loads(err.body())["error"]["type"] == "insufficient_scope"
    for bad in ("", 'a"b', "x" * 300, "tab\there"):
        with pytest.raises(ValueError, match="realm"):
            Challenges(bad)


def test_api_key_format_and_checksum() -> None:
    key_id, key = apikeys.generate_key()
    assert key.startswith(f"ah_{key_id}_") and len(key) == 3 + 12 + 1 + 43 + 6
    assert apikeys.parse_key(key) == key_id
    flipped = key[:20] + ("a" if key[20] != "a" else "b") + key[21:]
    with pytest.raises(InvalidCredential):
        apikeys.parse_key(flipped)
    with pytest.raises(InvalidCredential):
        apikeys.parse_key("ah_garbage")
    keys = {apikeys.generate_key()[1] for _ in range(200)}
    assert len(keys) == 200


@given(st.text(max_size=80))
def test_random_text_never_passes_the_checksum(text: str) -> None:
    with pytest.raises(InvalidCredential):
        apikeys.parse_key("ah_0123456789ab_" + text)


def test_check_record() -> None:
    key_id, key = apikeys.generate_key()
    record = apikeys.new_record(
        key_id=key_id,
        token=key,
        user_id="bob",
        tenant=None,
        scopes=["a"],
        expires_in=10,
        name="ci",
        now=100.0,
    )
    assert record.secret_hash != key and key not in repr(record)
    assert apikeys.check_record(key, record, 105.0).user_id == "bob"
    with pytest.raises(InvalidCredential):
        apikeys.check_record(key, record, 110.0)  # expired
    with pytest.raises(InvalidCredential):
        apikeys.check_record(key, None, 105.0)
    _, other = apikeys.generate_key()
    with pytest.raises(InvalidCredential):
        apikeys.check_record(other, record, 105.0)


@pytest.mark.parametrize(
    "algorithms",
    [[], ["none"], ["NoNe"], ["HS256", "RS256"], ["RS256", "ES256"], ["XS999"], "HS256, RS256"],
)
def test_algorithm_policy_refuses(algorithms: object) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        algorithm_family(algorithms)


def test_algorithm_families() -> None:
    assert algorithm_family(["RS256", "PS256"])[1] == "RSA"
    assert algorithm_family(["ES256"])[1] == "EC"
    assert algorithm_family(["EdDSA"])[1] == "OKP"
    assert algorithm_family("HS512")[1] == "HMAC"


def _jwks(*kids: str) -> dict[str, object]:
    from jwt.algorithms import RSAAlgorithm

    keys = []
    for kid in kids:
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(generate_keypair()[0], password=None)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))  # type: ignore[arg-type]
        jwk["kid"] = kid
        keys.append(jwk)
    return {"keys": keys}


def test_jwks_policy() -> None:
    now = [0.0]
    keys = JWKSKeys(("RS256",), "RSA", ttl=60, cooldown=10, clock=lambda: now[0])
    assert not keys.loaded and keys.should_fetch("a", "RS256")
    keys.fetch_started()
    assert not keys.should_fetch("a", "RS256")  # cooldown
    with pytest.raises(Exception, match="no JWKS"):
        keys.key_for("a", "RS256")
    keys.fetch_succeeded(_jwks("a"))
    assert keys.key_for("a", "RS256").key_id == "a"
    assert keys.key_for(None, "RS256").key_id == "a"  # single key, no kid
    with pytest.raises(InvalidCredential):
        keys.key_for("b", "RS256")
    assert not keys.should_fetch("b", "RS256")  # still cooling down
    now[0] = 11
    assert keys.should_fetch("b", "RS256") and not keys.should_fetch("a", "RS256")
    now[0] = 100  # fresh copy expired: refresh due, stale key still served
    assert keys.should_fetch("a", "RS256")
    assert keys.key_for("a", "RS256").key_id == "a"
    with pytest.raises(ValueError, match="usable"):
        keys.fetch_succeeded({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(ValueError):
        keys.fetch_succeeded({"nope": 1})
    assert keys.key_for("a", "RS256").key_id == "a"


def test_jwks_policy_skips_private_and_encryption_keys() -> None:
    doc = _jwks("sig", "enc", "priv")
    doc["keys"][1]["use"] = "enc"  # type: ignore[index]
    doc["keys"][2]["d"] = "AAAA"  # type: ignore[index]
    keys = JWKSKeys(("RS256",), "RSA", ttl=60, cooldown=0)
    keys.fetch_succeeded(doc)
    assert keys.key_for("sig", "RS256")
    for kid in ("enc", "priv"):
        with pytest.raises(InvalidCredential):
            keys.key_for(kid, "RS256")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_claim_values = st.dictionaries(
    st.sampled_from(["sub", "exp", "iat", "nbf", "aud", "iss", "scope", "tenant", "x"]),
    _json,
    max_size=9,
)


@given(_claim_values)
def test_signed_arbitrary_claims_verify_or_fail_cleanly(claims: dict[str, object]) -> None:
    """A correctly signed token with any claim values: an Identity or InvalidCredential."""
    import jwt

    from agenthood_mw._core.jwt import JWTSettings

    secret = b"k" * 32
    settings = JWTSettings(algorithms=("HS256",), audience="api", issuer="iss")
    token = jwt.api_jws.encode(json.dumps(claims).encode(), secret, algorithm="HS256")
    try:
        identity = settings.verify(token, secret)
    except InvalidCredential:
        return
    assert identity.user_id == claims["sub"] and identity.is_authenticated


# --- subjects must be usable as MemoryScope parts ---------------------------------------------

BAD_SCOPE_IDS = {
    "not NFC (e + combining acute)": "Ame\u0301lie",
    "private use": "\ue000",
    "unassigned": "\u0378",
    "lone surrogate": "al\ud800ice",
    "format character (zero-width joiner)": "ali\u200dce",
    "line separator": "a\u2028b",
    "257 characters": "u" * 257,
}


def _time_claims(**extra: object) -> dict[str, object]:
    return {"iat": 1000, "exp": 2000, "sub": "alice", **extra}


@pytest.mark.parametrize("value", sorted(BAD_SCOPE_IDS.values()), ids=sorted(BAD_SCOPE_IDS))
@pytest.mark.parametrize("claim", ["sub", "tenant", "uid"])
def test_jwt_subject_that_cannot_name_a_scope_is_invalid(claim: str, value: str) -> None:
    from agenthood_mw._core.jwt import JWTSettings

    settings = JWTSettings(algorithms=("HS256",), user_claim="uid" if claim == "uid" else "sub")
    claims = {**_time_claims(uid="alice"), claim: value}
    with pytest.raises(InvalidCredential):
        settings.identity(claims)


def test_jwt_subject_at_the_limits_is_accepted() -> None:
    from agenthood_mw._core.jwt import JWTSettings
    from agenthood_mw._core.scope import MemoryScope

    settings = JWTSettings(algorithms=("HS256",))
    for sub, tenant in [("u" * 256, "t" * 256), ("Amélie", "café"), ("用户", None)]:
        identity = settings.identity(_time_claims(sub=sub, tenant=tenant))
        assert (identity.user_id, identity.tenant) == (sub, tenant)
        assert MemoryScope.for_identity(identity).user == sub


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40)))
def test_every_accepted_jwt_identity_has_a_memory_scope(sub: str, tenant: str | None) -> None:
    from agenthood_mw._core.jwt import JWTSettings
    from agenthood_mw._core.scope import MemoryScope

    settings = JWTSettings(algorithms=("HS256",))
    try:
        identity = settings.identity(_time_claims(sub=sub, tenant=tenant))
    except InvalidCredential:
        return
    scope = MemoryScope.for_identity(identity)  # never raises for an accepted identity
    assert (scope.user, scope.tenant) == (sub, tenant)


@pytest.mark.parametrize("value", sorted(BAD_SCOPE_IDS.values()), ids=sorted(BAD_SCOPE_IDS))
@pytest.mark.parametrize("option", ["user_id", "tenant"])
def test_api_key_for_an_id_that_cannot_name_a_scope_is_refused(option: str, value: str) -> None:
    key_id, key = apikeys.generate_key()
    args: dict[str, object] = {"user_id": "bob", "tenant": None, option: value}
    with pytest.raises(ValueError, match=f"^{option}: ") as info:
        apikeys.new_record(
            key_id=key_id, token=key, scopes=(), expires_in=None, name="", now=0.0, **args
        )
    assert "memory scope" in str(info.value)


def test_check_identity_refuses_ids_that_cannot_name_a_scope() -> None:
    """Any authenticator's result (custom ones, API-key records stored before the check)."""
    from agenthood_mw import Identity
    from agenthood_mw._core.authcore import check_identity

    good = Identity(user_id="alice", tenant="acme")
    assert check_identity(good) is good
    for value in BAD_SCOPE_IDS.values():
        with pytest.raises(InvalidCredential):
            check_identity(Identity(user_id=value))
        with pytest.raises(InvalidCredential):
            check_identity(Identity(user_id="alice", tenant=value))
    with pytest.raises(TypeError):
        check_identity(Identity.anonymous())
    with pytest.raises(TypeError):
        check_identity("alice")


@given(
    st.one_of(st.sampled_from(["alice", "Ame\u0301lie", "u" * 257]), st.text(max_size=12)),
    st.one_of(
        st.none(),
        st.sampled_from(["acme", "agenthood.anonymous", "\ue000"]),
        st.text(max_size=12),
    ),
)
def test_check_identity_accepts_exactly_what_can_name_a_scope(
    user: str, tenant: str | None
) -> None:
    """Auth refuses (401) exactly the identities MemoryScope.for_identity refuses (a 500 later)
    and those the subject rule refuses (blank, padded, odd whitespace; issue 11 #18)."""
    from agenthood_mw import Identity
    from agenthood_mw._core.authcore import check_identity
    from agenthood_mw._core.scope import MemoryScope

    if not user:
        return  # Identity itself refuses an empty authenticated user id
    identity = Identity(user_id=user, tenant=tenant)
    try:
        MemoryScope.for_identity(identity)
        scoped = True
    except (TypeError, ValueError, PermissionError):
        scoped = False
    for part in (user, tenant):
        if part is not None and (
            part != part.strip() or any(c.isspace() and c != " " for c in part)
        ):
            scoped = False
    if scoped:
        assert check_identity(identity) is identity
    else:
        with pytest.raises(InvalidCredential):
            check_identity(identity)
