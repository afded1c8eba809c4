"""AuthMiddleware behaviour, every item through the Starlette, FastAPI and Flask shells."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from auth_support import AUDIENCE, SECRET, Client

from agenthood_mw.auth import InMemoryKeyStore, create_api_key, mint_token

MakeClient = Callable[..., Client]


def token(**kw: Any) -> str:
    kw.setdefault("secret", SECRET)
    kw.setdefault("user_id", "usr_8f3a")
    return mint_token(**kw)


def test_valid_jwt_sets_identity_everywhere(make_client: MakeClient) -> None:
    client = make_client()
    r = client.get("/me", token(scopes=["agents:run", "memory:read"], tenant="acme"))
    assert r.status == 200, r.text
    body = r.json
    assert body["user_id"] == body["current"] == body["state"] == "usr_8f3a"
    assert body["same_object"] is True
    assert body["tenant"] == "acme"
    assert body["scopes"] == body["auth_scopes"] == ["agents:run", "memory:read"]
    assert body["method"] == "jwt" and body["authenticated"] is True


def test_repeated_token_is_served_from_cache(make_client: MakeClient) -> None:
    client = make_client()
    tok = token()
    assert client.get("/me", tok).status == 200
    if client.shell != "fastapi":  # FastAPI builds its middleware stack lazily
        assert len(client.middleware._cache) == 1
    assert client.get("/me", tok).json["user_id"] == "usr_8f3a"


def test_missing_credentials_is_401_with_challenge(make_client: MakeClient) -> None:
    r = make_client(realm="agents").get("/me")
    assert r.status == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="agents"'
    assert r.json == {"error": {"type": "unauthorized", "message": "Authentication is required."}}
    assert r.headers["content-type"] == "application/json"


def test_bad_token_is_invalid_token_and_generic(make_client: MakeClient) -> None:
    bad = token(secret="another-secret-another-secret-another-secret")
    r = make_client().get("/me", bad)
    assert r.status == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.headers["www-authenticate"].startswith('Bearer realm="agenthood"')
    assert r.json["error"]["type"] == "invalid_token"
    assert bad not in r.text and "Signature" not in r.text and "signature" not in r.text


def test_expired_token_is_invalid_token(make_client: MakeClient) -> None:
    r = make_client().get("/me", token(ttl=-10))
    assert r.status == 401 and r.json["error"]["type"] == "invalid_token"
    assert "expired" not in r.headers["www-authenticate"].lower()


def test_two_authorization_headers_is_400(make_client: MakeClient) -> None:
    tok = token()
    r = make_client().request(
        "GET", "/me", [("Authorization", f"Bearer {tok}"), ("Authorization", f"Bearer {tok}")]
    )
    assert r.status == 400
    assert r.json["error"]["type"] == "invalid_request"
    assert 'error="invalid_request"' in r.headers["www-authenticate"]


def test_required_scopes_option_gives_403_insufficient_scope(make_client: MakeClient) -> None:
    client = make_client(required_scopes=["agents:run"])
    r = client.get("/me", token(scopes=["memory:read"]))
    assert r.status == 403
    assert r.json["error"]["type"] == "insufficient_scope"
    assert r.json["error"]["required_scopes"] == ["agents:run"]
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="agents:run"' in challenge
    assert client.get("/me", token(scopes=["agents:run"])).status == 200
    # The cache must not turn a 403 into a 200 for the same token.
    assert client.get("/me", token(scopes=["memory:read"])).status == 403


def test_route_level_scope_check(make_client: MakeClient) -> None:
    """Starlette ``@requires``, FastAPI ``require_identity`` and Flask ``has_scopes``."""
    client = make_client()
    ok = client.get("/agents/run", token(scopes=["agents:run"]))
    assert ok.status == 200 and ok.json == {"ran_for": "usr_8f3a"}
    denied = client.get("/agents/run", token(scopes=["memory:read"]))
    assert denied.status == 403
    if client.shell == "fastapi":
        assert denied.json == {"detail": "insufficient_scope"}
        assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


def test_exempt_paths_pass_without_credentials(make_client: MakeClient) -> None:
    client = make_client(exempt_paths=["/health"])
    r = client.get("/health")
    assert r.status == 200 and r.json == {"ok": True, "user": ""}
    # Exempt means exempt: even a garbage token is not examined there.
    assert client.get("/health", "garbage").status == 200
    assert client.get("/me").status == 401


def test_optional_mode_allows_anonymous(make_client: MakeClient) -> None:
    client = make_client(optional=True)
    r = client.get("/me")
    assert r.status == 200
    assert r.json["authenticated"] is False and r.json["method"] == "anonymous"
    assert r.json["current"] == "" and r.json["scopes"] == []
    # A presented but invalid credential is still refused.
    assert client.get("/me", "abc.def.ghi").status == 401
    assert client.get("/me", token()).json["authenticated"] is True


def test_optional_mode_and_fastapi_dependency_401(shell: str, make_client: MakeClient) -> None:
    client = make_client(optional=True)
    r = client.get("/agents/run")
    if shell == "fastapi":
        assert r.status == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="agenthood"'
    else:
        assert r.status in (401, 403)


PREFLIGHT = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")]


def test_cors_preflight_is_authenticated_like_any_request(make_client: MakeClient) -> None:
    """A preflight never reaches the app unauthenticated (the app may not dispatch on method).

    CORS is answered by a CORS middleware placed outside AuthMiddleware (tests/auth/test_cors.py).
    """
    client = make_client()
    r = client.request("OPTIONS", "/me", PREFLIGHT)
    assert r.status == 401, r.text
    assert r.json["error"]["type"] == "unauthorized"
    assert client.request("OPTIONS", "/me").status == 401
    # With a credential it is an ordinary authenticated request.
    r = client.request("OPTIONS", "/me", [*PREFLIGHT, ("Authorization", f"Bearer {token()}")])
    assert r.status == 200 and r.json["user_id"] == "usr_8f3a", r.text


def test_cors_preflight_in_optional_mode_is_anonymous(make_client: MakeClient) -> None:
    r = make_client(optional=True).request("OPTIONS", "/me", PREFLIGHT)
    assert r.status == 200, r.text
    assert r.json["authenticated"] is False and r.json["method"] == "anonymous"


def test_api_key_strategy(make_client: MakeClient) -> None:
    store = InMemoryKeyStore()
    created = create_api_key(store, user_id="bob", tenant="acme", scopes=["agents:run"])
    client = make_client(strategy="api_key", key_store=store)
    for headers in (
        [("Authorization", f"Bearer {created.secret}")],
        [("X-API-Key", created.secret)],
    ):
        r = client.request("GET", "/me", headers)
        assert r.status == 200, r.text
        assert r.json["user_id"] == "bob" and r.json["method"] == "api_key"
        assert r.json["tenant"] == "acme" and r.json["scopes"] == ["agents:run"]
    assert store.revoke(created.key_id)
    r = client.request("GET", "/me", [("X-API-Key", created.secret)])
    assert r.status == 401 and r.json["error"]["type"] == "invalid_token"


def test_api_key_never_from_query_string(make_client: MakeClient) -> None:
    store = InMemoryKeyStore()
    created = create_api_key(store, user_id="bob")
    client = make_client(strategy="api_key", key_store=store)
    for param in ("api_key", "apikey", "key", "access_token", "token"):
        r = client.request("GET", f"/me?{param}={created.secret}")
        assert r.status == 401, param


def test_api_key_and_jwt_header_together_is_400(make_client: MakeClient) -> None:
    store = InMemoryKeyStore()
    created = create_api_key(store, user_id="bob")
    client = make_client(strategy=["jwt", "api_key"], key_store=store)
    r = client.request(
        "GET", "/me", [("Authorization", f"Bearer {token()}"), ("X-API-Key", created.secret)]
    )
    assert r.status == 400


def test_chain_first_recognising_strategy_wins(make_client: MakeClient) -> None:
    store = InMemoryKeyStore()
    created = create_api_key(store, user_id="bob")

    class Static:
        name = "static"

        def recognizes(self, credential: Any) -> bool:
            return credential.token.startswith("static-")

        def authenticate(self, credential: Any) -> Any:
            from agenthood_mw import Identity
            from agenthood_mw.auth import InvalidCredential

            if credential.token != "static-good":
                raise InvalidCredential("nope")
            return Identity(user_id="svc", scopes={"agents:run"}, method="static")

    client = make_client(strategy=[Static(), "jwt", "api_key"], key_store=store)
    assert client.get("/me", "static-good").json["method"] == "static"
    assert client.get("/me", "static-bad").status == 401
    assert client.get("/me", token()).json["method"] == "jwt"
    assert client.get("/me", created.secret).json["method"] == "api_key"
    assert client.get("/me", "unrecognised").status == 401


def test_custom_authenticator_crash_is_503_not_500(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name = "broken"

        def recognizes(self, credential: Any) -> bool:
            return True

        def authenticate(self, credential: Any) -> Any:
            raise RuntimeError(f"database down while checking {credential.token}")

    caplog.set_level(logging.ERROR, logger="agenthood_mw.auth")
    r = make_client(strategy=Broken()).get("/me", "some-token")
    assert "RuntimeError" in caplog.text and "some-token" not in caplog.text
    assert r.status == 503
    assert r.json["error"]["type"] == "auth_unavailable"
    assert "some-token" not in r.text and "database" not in r.text


def test_custom_authenticator_id_that_cannot_name_a_scope_is_invalid_token(
    make_client: MakeClient,
) -> None:
    """Whatever authenticated the caller, an id no MemoryScope accepts is refused at auth."""
    from agenthood_mw import Identity

    class Upstream:
        name = "upstream"

        def recognizes(self, credential: Any) -> bool:
            return credential.token.startswith("up-")

        def authenticate(self, credential: Any) -> Any:
            user, _, tenant = credential.token[3:].partition("-")
            return Identity(
                user_id=user.replace("N", "e\u0301").replace("P", "\ue000"),
                tenant=tenant.replace("N", "e\u0301") or None,
                method="upstream",
            )

    client = make_client(strategy=Upstream())
    assert client.get("/me", "up-alice-acme").json["tenant"] == "acme"
    for bad in ("up-aliN", "up-aliP", "up-alice-acmN"):
        r = client.get("/me", bad)
        assert r.status == 401 and r.json["error"]["type"] == "invalid_token", (bad, r.text)


def test_tenant_and_scope_claims_are_configurable(make_client: MakeClient) -> None:
    client = make_client(user_claim="uid", tenant_claim="org", scopes_claim="perms")
    tok = token(claims={"uid": "u-42", "org": "acme", "perms": ["a:b", "c:d"]})
    body = client.get("/me", tok).json
    assert (body["user_id"], body["tenant"], body["scopes"]) == ("u-42", "acme", ["a:b", "c:d"])


def test_issuer_is_checked(make_client: MakeClient) -> None:
    client = make_client(issuer="https://id.example")
    assert client.get("/me", token(issuer="https://id.example")).status == 200
    assert client.get("/me", token(issuer="https://id.example.evil")).status == 401
    assert client.get("/me", token()).status == 401  # iss required when configured


def test_leeway_accepts_slightly_expired_tokens(make_client: MakeClient) -> None:
    now = int(time.time())
    slightly = token(claims={"iat": now - 100, "exp": now - 5})
    assert make_client().get("/me", slightly).status == 401
    assert make_client(leeway="30s").get("/me", slightly).status == 200


def test_max_token_lifetime(make_client: MakeClient) -> None:
    week = token(ttl=7 * 86400)
    assert make_client().get("/me", week).status == 401  # default 1 day
    assert make_client(max_token_lifetime="30d").get("/me", week).status == 200
    assert make_client(max_token_lifetime=None).get("/me", week).status == 200


def test_audience_list(make_client: MakeClient) -> None:
    client = make_client(audience=["agenthood-api", "other-api"])
    assert client.get("/me", token(audience="other-api")).status == 200
    assert client.get("/me", token(audience="third")).status == 401


def test_same_answers_from_every_shell() -> None:
    """The three shells answer a set of requests identically (status and error type)."""
    cases = [
        [],
        [("Authorization", f"Bearer {token()}")],
        [("Authorization", "Bearer not-a-jwt")],
        [("Authorization", "Basic dXNlcjpwYXNz")],
        [("Authorization", "Bearer")],
    ]
    answers = {}
    for shell in ("starlette", "fastapi", "flask"):
        client = Client(shell, {"strategy": "jwt", "secret": SECRET, "audience": AUDIENCE})
        answers[shell] = [
            (r.status, r.json.get("error", {}).get("type") if r.status != 200 else None)
            for r in (client.request("GET", "/me", h) for h in cases)
        ]
    assert answers["starlette"] == answers["fastapi"] == answers["flask"]
    assert [s for s, _ in answers["flask"]] == [401, 200, 401, 401, 400]


@pytest.mark.parametrize("shell_name", ["starlette", "flask"])
def test_current_identity_is_reset_after_the_request(shell_name: str) -> None:
    from agenthood_mw import current_identity

    client = Client(shell_name, {"strategy": "jwt", "secret": SECRET, "audience": AUDIENCE})
    assert client.get("/me", token()).status == 200
    with pytest.raises(LookupError):
        current_identity()
