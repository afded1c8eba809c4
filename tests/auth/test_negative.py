"""Hostile and malformed credentials: each one answered 401 or 400 -- never 200, never 500.

The middleware under attack is configured like a production deployment: RS256 with a public
key, audience and issuer checked, chained with API keys. Every case runs through the
Starlette, FastAPI and Flask shells.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from auth_support import KeyServer, b64, forge, public_jwk, sign
from cryptography.hazmat.primitives import serialization

from agenthood_mw.auth import InMemoryKeyStore, create_api_key
from agenthood_mw.testing._tokens import generate_keypair

AUD = "agenthood-api"
ISS = "https://id.example.com"
PRIVATE, PUBLIC = generate_keypair("RS256")
ATTACKER_PRIVATE, ATTACKER_PUBLIC = generate_keypair("RS256")
NOW = int(time.time())
STORE = InMemoryKeyStore()
REVOKED = create_api_key(STORE, user_id="mallory")
STORE.revoke(REVOKED.key_id)
EXPIRED = create_api_key(STORE, user_id="mallory", expires_in="1ms")
GOOD_KEY = create_api_key(STORE, user_id="alice")


def _legacy_key() -> str:
    """A key whose record names an owner create_api_key now refuses (stored before the check)."""
    from dataclasses import replace

    from agenthood_mw._core.apikeys import generate_key, hash_key

    key_id, key = generate_key()
    template = STORE.get(GOOD_KEY.key_id)
    assert template is not None
    STORE.add(replace(template, key_id=key_id, user_id="Ame\u0301lie", secret_hash=hash_key(key)))
    return key


LEGACY_KEY = _legacy_key()
ATTACKER_SERVER = KeyServer()
ATTACKER_SERVER.documents["/attacker.json"] = {"keys": [public_jwk(ATTACKER_PRIVATE, "evil")]}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "usr_8f3a", "aud": AUD, "iss": ISS, "iat": NOW, "exp": NOW + 600}
    for key, value in overrides.items():
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


_DROP = object()


def good() -> str:
    return sign(claims(), PRIVATE)


def _der() -> bytes:
    key = serialization.load_pem_public_key(PUBLIC)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _tampered() -> str:
    head, _payload, sig = good().split(".")
    return ".".join([head, b64(json.dumps(claims(sub="admin")).encode()), sig])


def _stripped() -> str:
    head, payload, _sig = good().split(".")
    return f"{head}.{payload}."


def _jwe() -> str:
    parts = [b64(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM"}).encode())] + [
        b64(b"x" * 16) for _ in range(4)
    ]
    return ".".join(parts)


RS = {"alg": "RS256", "typ": "JWT"}
HS = {"alg": "HS256", "typ": "JWT"}
ATTACKER_JWK = public_jwk(ATTACKER_PRIVATE, "evil")

# name -> (headers builder, accepted statuses)
Case = Callable[[], list[tuple[str, str]]]


def bearer(make: Callable[[], str]) -> Case:
    return lambda: [("Authorization", f"Bearer {make()}")]


CASES: dict[str, Case] = {
    "alg none": bearer(lambda: forge({"alg": "none"}, claims())),
    "alg None": bearer(lambda: forge({"alg": "None"}, claims())),
    "alg NONE": bearer(lambda: forge({"alg": "NONE"}, claims())),
    "alg nOnE": bearer(lambda: forge({"alg": "nOnE"}, claims())),
    "alg none with signature": bearer(lambda: forge({"alg": "none"}, claims(), b"k" * 32)),
    "HS256 keyed with RSA public PEM": bearer(lambda: forge(HS, claims(), PUBLIC)),
    "HS256 keyed with RSA public DER": bearer(lambda: forge(HS, claims(), _der())),
    "HS256 keyed with RSA public JWK JSON": bearer(
        lambda: forge(HS, claims(), json.dumps(public_jwk(PRIVATE, "k1")).encode())
    ),
    "tampered payload": bearer(_tampered),
    "stripped signature": bearer(_stripped),
    "exp missing": bearer(lambda: sign(claims(exp=_DROP), PRIVATE)),
    "exp expired": bearer(lambda: sign(claims(iat=NOW - 900, exp=NOW - 300), PRIVATE)),
    "exp string": bearer(lambda: sign(claims(exp=str(NOW + 600)), PRIVATE)),
    "exp null": bearer(lambda: sign(claims(exp=None), PRIVATE)),
    "exp huge": bearer(lambda: sign(claims(exp=10**20), PRIVATE)),
    "exp 1e400 (infinite)": bearer(
        lambda: sign(json.dumps(claims()).replace(str(NOW + 600), "1e400").encode(), PRIVATE)
    ),
    "nbf in the future": bearer(lambda: sign(claims(nbf=NOW + 3600), PRIVATE)),
    "iat in the future": bearer(lambda: sign(claims(iat=NOW + 3600, exp=NOW + 4000), PRIVATE)),
    "aud missing": bearer(lambda: sign(claims(aud=_DROP), PRIVATE)),
    "aud wrong": bearer(lambda: sign(claims(aud="other-api"), PRIVATE)),
    "aud integer": bearer(lambda: sign(claims(aud=12345), PRIVATE)),
    "issuer prefix": bearer(lambda: sign(claims(iss=ISS + ".evil.example"), PRIVATE)),
    "issuer truncated": bearer(lambda: sign(claims(iss=ISS[:-4]), PRIVATE)),
    "sub empty": bearer(lambda: sign(claims(sub=""), PRIVATE)),
    "sub integer": bearer(lambda: sign(claims(sub=42), PRIVATE)),
    "sub oversized": bearer(lambda: sign(claims(sub="u" * 10_000), PRIVATE)),
    "sub control characters": bearer(lambda: sign(claims(sub="alice\x00bob"), PRIVATE)),
    "scope claim an object": bearer(lambda: sign(claims(scope={"a": 1}), PRIVATE)),
    # Ids that cannot name a MemoryScope (every later request would fail): refused at auth.
    "sub not NFC": bearer(lambda: sign(claims(sub="Ame\u0301lie"), PRIVATE)),
    "sub private-use character": bearer(lambda: sign(claims(sub="\ue000"), PRIVATE)),
    "sub unassigned code point": bearer(lambda: sign(claims(sub="\u0378"), PRIVATE)),
    "sub lone surrogate": bearer(lambda: sign(claims(sub="al\ud800ice"), PRIVATE)),
    "sub zero-width joiner": bearer(lambda: sign(claims(sub="ali\u200dce"), PRIVATE)),
    "sub 257 characters": bearer(lambda: sign(claims(sub="u" * 257), PRIVATE)),
    "tenant not NFC": bearer(lambda: sign(claims(tenant="Cafe\u0301"), PRIVATE)),
    "tenant private-use character": bearer(lambda: sign(claims(tenant="\U000f0000"), PRIVATE)),
    "tenant lone surrogate": bearer(lambda: sign(claims(tenant="\udfff"), PRIVATE)),
    "tenant integer": bearer(lambda: sign(claims(tenant=7), PRIVATE)),
    "api key stored for a non-NFC owner": bearer(lambda: LEGACY_KEY),
    "unknown crit": bearer(
        lambda: sign(claims(), PRIVATE, headers={"crit": ["exp-ext"], "exp-ext": 1})
    ),
    "kid traversal, HS256 keyed with /dev/null": bearer(
        lambda: forge({"alg": "HS256", "kid": "../../../../../dev/null"}, claims(), b"")
    ),
    "kid traversal, attacker RS256 key": bearer(
        lambda: sign(claims(), ATTACKER_PRIVATE, headers={"kid": "../../../etc/passwd"})
    ),
    "jku pointing at attacker key": bearer(
        lambda: sign(
            claims(),
            ATTACKER_PRIVATE,
            headers={"kid": "evil", "jku": ATTACKER_SERVER.url("/attacker.json")},
        )
    ),
    "jwk header with attacker key": bearer(
        lambda: sign(claims(), ATTACKER_PRIVATE, headers={"kid": "evil", "jwk": ATTACKER_JWK})
    ),
    "x5u pointing at attacker": bearer(
        lambda: sign(
            claims(), ATTACKER_PRIVATE, headers={"x5u": ATTACKER_SERVER.url("/attacker.json")}
        )
    ),
    "signed by another RSA key": bearer(lambda: sign(claims(), ATTACKER_PRIVATE)),
    "5-segment JWE": bearer(_jwe),
    "1 MB token": bearer(lambda: "a" * 1_000_000 + "." + "b" * 10 + ".c"),
    "header not JSON": bearer(lambda: f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'sig')}"),
    "header a JSON list": bearer(lambda: f"{b64(b'[1]')}.{b64(b'{}')}.{b64(b'sig')}"),
    "payload not JSON": bearer(lambda: sign(b"\xff\xfe not json", PRIVATE)),
    "non-base64 garbage": bearer(lambda: "%%%.^^^.***"),
    "Basic scheme": lambda: [
        ("Authorization", "Basic " + base64.b64encode(b"admin:admin").decode())
    ],
    "Token scheme with a valid JWT": lambda: [("Authorization", f"Token {good()}")],
    "Bearer without token": lambda: [("Authorization", "Bearer")],
    "Bearer with spaces in token": lambda: [("Authorization", "Bearer a b c")],
    "two bearer tokens": lambda: [
        ("Authorization", f"Bearer {good()}"),
        ("Authorization", f"Bearer {good()}"),
    ],
    "revoked api key": bearer(lambda: REVOKED.secret),
    "expired api key": bearer(lambda: EXPIRED.secret),
    "garbage api key": bearer(lambda: "ah_" + "x" * 60),
    "api key with wrong checksum": bearer(
        lambda: GOOD_KEY.secret[:-1] + ("A" if GOOD_KEY.secret[-1] != "A" else "B")
    ),
    "api key with valid checksum, unknown id": bearer(lambda: _reforged_key("0" * 12)),
    "api key with valid checksum, wrong secret": bearer(
        lambda: _reforged_key(GOOD_KEY.key_id, secret="Z" * 43)
    ),
    "api key in X-API-Key, revoked": lambda: [("X-API-Key", REVOKED.secret)],
}


def _reforged_key(key_id: str, secret: str | None = None) -> str:
    from agenthood_mw._core.apikeys import _checksum

    body = f"ah_{key_id}_{secret or GOOD_KEY.secret[16:59]}"
    return body + _checksum(body)


def test_suite_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.fixture
def hardened(make_client: Callable[..., Any]) -> Any:
    return make_client(
        strategy=["jwt", "api_key"],
        public_key=PUBLIC,
        algorithms=["RS256"],
        audience=AUD,
        issuer=ISS,
        key_store=STORE,
    )


def test_controls_are_accepted(hardened: Any) -> None:
    """The attack cases are meaningful: the same setup accepts the genuine credentials."""
    assert hardened.get("/me", good()).status == 200
    assert hardened.get("/me", GOOD_KEY.secret).status == 200


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_credential_is_refused(hardened: Any, name: str) -> None:
    if name == "expired api key":
        time.sleep(0.002)  # it was created with expires_in="1ms"
    r = hardened.request("GET", "/me", CASES[name]())
    assert r.status in (400, 401), (name, r.status, r.text[:200])
    body = r.json
    assert body["error"]["type"] in ("invalid_token", "invalid_request", "unauthorized")
    assert "Traceback" not in r.text and len(r.text) < 300
    assert r.headers["www-authenticate"].startswith('Bearer realm="agenthood"')


def test_key_bearing_headers_are_never_followed(hardened: Any) -> None:
    hardened.request("GET", "/me", CASES["jku pointing at attacker key"]())
    hardened.request("GET", "/me", CASES["x5u pointing at attacker"]())
    assert ATTACKER_SERVER.requests == []


def test_hs256_with_secret_rejects_rs_tokens(make_client: Callable[..., Any]) -> None:
    """The reverse confusion: an HS-configured middleware refuses asymmetric algorithms."""
    client = make_client()  # HS256 secret
    assert client.get("/me", sign(claims(), PRIVATE)).status == 401
