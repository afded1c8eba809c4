"""Interoperability: tokens minted by a second JOSE library (joserfc) verify correctly."""

from __future__ import annotations

import time
from typing import Any

import pytest
from auth_support import AUDIENCE, KeyServer, starlette_app
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from starlette.testclient import TestClient

from agenthood_mw.auth import AuthMiddleware

NOW = int(time.time())
CLAIMS = {"sub": "usr_jose", "aud": AUDIENCE, "iat": NOW, "exp": NOW + 300, "scope": "agents:run"}


def _client(**options: Any) -> TestClient:
    return TestClient(AuthMiddleware(starlette_app(), strategy="jwt", audience=AUDIENCE, **options))


def _check(client: TestClient, token: str) -> None:
    r = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "usr_jose" and r.json()["scopes"] == ["agents:run"]


def test_hs256_from_joserfc() -> None:
    secret = "joserfc-shared-secret-0123456789abcdef"
    token = jose_jwt.encode({"alg": "HS256"}, CLAIMS, OctKey.import_key(secret))
    _check(_client(secret=secret), token)


@pytest.mark.parametrize(
    ("alg", "generate"),
    [
        ("RS256", lambda: RSAKey.generate_key(2048)),
        ("PS256", lambda: RSAKey.generate_key(2048)),
        ("ES256", lambda: ECKey.generate_key("P-256")),
        ("ES384", lambda: ECKey.generate_key("P-384")),
        ("EdDSA", lambda: OKPKey.generate_key("Ed25519")),
    ],
)
def test_asymmetric_from_joserfc(alg: str, generate: Any) -> None:
    key = generate()
    token = jose_jwt.encode({"alg": alg}, CLAIMS, key, algorithms=[alg])
    public_pem = key.as_pem(private=False)
    _check(_client(public_key=public_pem, algorithms=[alg]), token)


def test_joserfc_key_served_by_jwks() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "jose-1", "use": "sig", "alg": "RS256"})
    server = KeyServer()
    server.documents["/jwks"] = {"keys": [key.as_dict(private=False)]}
    try:
        client = _client(jwks_url=server.url("/jwks"), algorithms=["RS256"])
        token = jose_jwt.encode({"alg": "RS256", "kid": "jose-1"}, CLAIMS, key)
        _check(client, token)
    finally:
        server.stop()


def test_joserfc_token_with_wrong_audience_is_refused() -> None:
    secret = "joserfc-shared-secret-0123456789abcdef"
    token = jose_jwt.encode({"alg": "HS256"}, {**CLAIMS, "aud": "x"}, OctKey.import_key(secret))
    r = _client(secret=secret).get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
