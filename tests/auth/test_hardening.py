"""Issue 11 hardening of auth: huge numeric claims, bounded leeway and key lifetime, the
subject rule (blank and padded ids), and numbers a custom authenticator may return."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from auth_support import AUDIENCE, SECRET, Client

from agenthood_mw import Identity
from agenthood_mw._core import apikeys
from agenthood_mw._core.authcore import Credential, InvalidCredential, check_subject
from agenthood_mw.auth import AuthMiddleware, InMemoryKeyStore, create_api_key
from agenthood_mw.wsgi import AuthMiddleware as WSGIAuth

MakeClient = Callable[..., Client]

HUGE = {
    "exp=10**400": {"exp": 10**400},
    "exp=10**309": {"exp": 10**309},
    "exp=1e308": {"exp": 1e308},
    "iat=-10**400": {"iat": -(10**400)},
    "iat=10**400": {"iat": 10**400},
    "nbf=10**400": {"nbf": 10**400},
    "nbf=-10**400": {"nbf": -(10**400)},
    "nbf=-1": {"nbf": -1},
    "iat=-1": {"iat": -1},
    "exp=year 10000": {"exp": 253_402_300_800},
}


def _signed(**overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "aud": AUDIENCE, "iat": now, "exp": now + 600}
    claims.update(overrides)
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("lifetime", ["1d", None])
@pytest.mark.parametrize("claims", list(HUGE.values()), ids=list(HUGE))
def test_huge_numeric_claims_are_an_invalid_token(
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, Any],
    lifetime: str | None,
) -> None:
    client = make_client(max_token_lifetime=lifetime)
    with caplog.at_level(logging.DEBUG, logger="agenthood_mw"):
        response = client.get("/me", _signed(**claims))
    assert response.status == 401
    assert response.json["error"]["type"] == "invalid_token"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_far_but_representable_expiry_is_still_accepted(make_client: MakeClient) -> None:
    client = make_client(max_token_lifetime=None)
    assert client.get("/me", _signed(exp=253_402_300_799)).status == 200


class _Custom:
    """A custom authenticator whose identities carry whatever ``exp`` it is given."""

    name = "custom"
    cacheable = True

    def __init__(self, exp: object) -> None:
        self.exp = exp

    def recognizes(self, credential: Credential) -> bool:
        return True

    def authenticate(self, credential: Credential) -> Identity:
        return Identity(user_id="carol", claims={"exp": self.exp}, method="custom")


@pytest.mark.parametrize("exp", [10**400, -(10**400), float("nan"), float("inf"), "soon"])
def test_a_custom_identity_with_an_absurd_exp_is_served_and_not_cached(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, exp: object
) -> None:
    client = make_client(strategy=_Custom(exp))
    with caplog.at_level(logging.ERROR, logger="agenthood_mw"):
        for _ in range(2):
            response = client.get("/me", "opaque-token")
            assert response.status == 200
            assert response.json["user_id"] == "carol"
    assert not caplog.records
    if client.shell != "fastapi":
        assert len(client.middleware._cache) == 0


# --- leeway ---------------------------------------------------------------------------------


@pytest.mark.parametrize("middleware", [AuthMiddleware, WSGIAuth])
@pytest.mark.parametrize("leeway", ["365d", 10**9, 10**400, "301s", 300.5, "6m"])
def test_leeway_above_five_minutes_fails_at_construction(middleware: Any, leeway: object) -> None:
    with pytest.raises(ValueError, match=r"^leeway: "):
        middleware(lambda *a: None, secret=SECRET, audience=AUDIENCE, leeway=leeway)


@pytest.mark.parametrize("middleware", [AuthMiddleware, WSGIAuth])
@pytest.mark.parametrize("leeway", [0, "30s", "5m", 300])
def test_leeway_up_to_five_minutes_is_accepted(middleware: Any, leeway: object) -> None:
    middleware(lambda *a: None, secret=SECRET, audience=AUDIENCE, leeway=leeway)


def test_a_large_leeway_never_revives_a_long_expired_token(make_client: MakeClient) -> None:
    now = int(time.time())
    expired = _signed(iat=now - 7200, exp=now - 3600)
    assert make_client(leeway="5m").get("/me", expired).status == 401


@pytest.mark.parametrize("middleware", [AuthMiddleware, WSGIAuth])
@pytest.mark.parametrize(
    "option", ["max_token_lifetime", "jwks_cache_ttl", "jwks_cooldown", "jwks_timeout"]
)
def test_other_durations_too_large_for_a_float_fail_naming_the_option(
    middleware: Any, option: str
) -> None:
    key = (
        {"secret": SECRET}
        if option == "max_token_lifetime"
        else {"jwks_url": "https://idp.example/jwks", "algorithms": ["RS256"]}
    )
    with pytest.raises(ValueError, match=f"^{option}: "):
        middleware(lambda *a: None, audience=AUDIENCE, **key, **{option: 10**400})


# --- API-key lifetime -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expires_in",
    [10**400, 10**309, "99999999999999999999w", "3651d", 3650 * 86400 + 1, float("inf")],
)
def test_api_key_lifetime_is_bounded(expires_in: object) -> None:
    store = InMemoryKeyStore()
    with pytest.raises(ValueError, match=r"^expires_in: "):
        create_api_key(store, user_id="bob", expires_in=expires_in)
    assert store.list() == []


def test_api_key_lifetime_of_ten_years_is_accepted() -> None:
    created = create_api_key(InMemoryKeyStore(), user_id="bob", expires_in="3650d")
    assert created.expires_at is not None
    assert created.expires_at - created.record.created_at == 3650 * 86400


@pytest.mark.parametrize("expires_in", [10**400, -1, 0, float("nan"), True, "1d"])
def test_new_record_refuses_an_unusable_lifetime(expires_in: object) -> None:
    key_id, token = apikeys.generate_key()
    with pytest.raises((ValueError, TypeError), match=r"^expires_in: "):
        apikeys.new_record(
            key_id=key_id,
            token=token,
            user_id="bob",
            tenant=None,
            scopes=(),
            expires_in=expires_in,
            name="",
            now=time.time(),
        )


# --- the subject rule -----------------------------------------------------------------------

BAD_SUBJECTS = {
    "blank": " ",
    "blanks": "   ",
    "leading space": " alice",
    "trailing space": "alice ",
    "no-break space inside": "al\u00a0ice",
    "ideographic space": "\u3000alice",
    "en space only": "\u2002",
    "tab": "al\tice",
    "newline": "alice\n",
    "zero width space": "al\u200bice",
}
GOOD_SUBJECTS = ["alice", "alice smith", "usr_8f3a", "Amélie", "a.b@c.example", "42"]


@pytest.mark.parametrize("value", list(BAD_SUBJECTS.values()), ids=list(BAD_SUBJECTS))
def test_check_subject_refuses_what_a_person_would_not_call_an_id(value: str) -> None:
    with pytest.raises(ValueError, match=r"^user: "):
        check_subject(value, what="user")


@pytest.mark.parametrize("value", GOOD_SUBJECTS)
def test_check_subject_accepts_ordinary_ids(value: str) -> None:
    assert check_subject(value, what="user") == value


@pytest.mark.parametrize("claim", ["sub", "tenant"])
@pytest.mark.parametrize("value", list(BAD_SUBJECTS.values()), ids=list(BAD_SUBJECTS))
def test_jwt_with_a_bad_subject_or_tenant_is_an_invalid_token(
    make_client: MakeClient, claim: str, value: str
) -> None:
    response = make_client().get("/me", _signed(**{claim: value}))
    assert response.status == 401
    assert response.json["error"]["type"] == "invalid_token"


def test_jwt_sub_is_checked_even_when_another_claim_names_the_user(
    make_client: MakeClient,
) -> None:
    client = make_client(user_claim="uid")
    assert client.get("/me", _signed(sub=" padded", uid="alice")).status == 401
    assert client.get("/me", _signed(sub="alice", uid="alice ")).status == 401
    ok = client.get("/me", _signed(sub="alice", uid="alice smith"))
    assert ok.status == 200 and ok.json["user_id"] == "alice smith"


@pytest.mark.parametrize("value", GOOD_SUBJECTS)
def test_jwt_with_an_ordinary_subject_is_accepted(make_client: MakeClient, value: str) -> None:
    response = make_client().get("/me", _signed(sub=value, tenant=value))
    assert response.status == 200
    assert response.json["user_id"] == value and response.json["tenant"] == value


@pytest.mark.parametrize("option", ["user_id", "tenant"])
@pytest.mark.parametrize("value", list(BAD_SUBJECTS.values()), ids=list(BAD_SUBJECTS))
def test_api_key_creation_refuses_a_bad_subject(option: str, value: str) -> None:
    store = InMemoryKeyStore()
    args: dict[str, Any] = {"user_id": "bob", option: value}
    with pytest.raises(ValueError, match=f"^{option}: "):
        create_api_key(store, **args)
    assert store.list() == []


def test_a_stored_api_key_of_a_padded_user_is_refused(make_client: MakeClient) -> None:
    """A key stored before the rule (or by another tool) no longer authenticates anyone."""
    store = InMemoryKeyStore()
    key_id, token = apikeys.generate_key()
    good = apikeys.new_record(
        key_id=key_id,
        token=token,
        user_id="bob",
        tenant=None,
        scopes=(),
        expires_in=None,
        name="",
        now=time.time(),
    )
    from dataclasses import replace

    store.add(replace(good, user_id=" bob"))
    client = make_client(strategy="api_key", key_store=store)
    response = client.request("GET", "/me", {"X-API-Key": token})
    assert response.status == 401
    assert response.json["error"]["type"] == "invalid_token"


class _Fixed:
    name = "fixed"

    def __init__(self, user: str, tenant: str | None = None) -> None:
        self.user, self.tenant = user, tenant

    def recognizes(self, credential: Credential) -> bool:
        return True

    def authenticate(self, credential: Credential) -> Identity:
        return Identity(user_id=self.user, tenant=self.tenant, method="fixed")


@pytest.mark.parametrize("value", list(BAD_SUBJECTS.values()), ids=list(BAD_SUBJECTS))
def test_a_custom_authenticator_cannot_admit_a_bad_subject(
    make_client: MakeClient, value: str
) -> None:
    for strategy in (_Fixed(value), _Fixed("dave", value)):
        response = make_client(strategy=strategy).get("/me", "opaque")
        assert response.status == 401
        assert response.json["error"]["type"] == "invalid_token"


def test_the_jwt_core_refuses_a_bad_subject_before_building_an_identity() -> None:
    from agenthood_mw._core.jwt import JWTSettings

    settings = JWTSettings(algorithms=("HS256",))
    now = int(time.time())
    with pytest.raises(InvalidCredential):
        settings.identity({"sub": "alice ", "iat": now, "exp": now + 60})
    with pytest.raises(InvalidCredential):
        settings.identity({"sub": "alice", "iat": now, "exp": 10**400})


@pytest.mark.parametrize("ttl", [10**400, float("inf"), float("nan"), -(10**400), "1h", True])
def test_mint_token_refuses_a_ttl_naming_no_date(ttl: object) -> None:
    from agenthood_mw.auth import mint_token

    with pytest.raises(ValueError, match=r"^ttl: "):
        mint_token(secret=SECRET, user_id="alice", ttl=ttl)  # type: ignore[arg-type]


def test_mint_token_still_mints_expired_tokens_for_tests(make_client: MakeClient) -> None:
    from agenthood_mw.auth import mint_token

    expired = mint_token(secret=SECRET, user_id="alice", ttl=-60)
    assert make_client().get("/me", expired).status == 401
