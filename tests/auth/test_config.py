"""Construction-time validation: both shells, identical keywords, errors naming the option."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from auth_support import SECRET

from agenthood_mw.auth import AuthMiddleware, InMemoryKeyStore
from agenthood_mw.auth._wsgi import AuthMiddleware as WSGIAuth
from agenthood_mw.testing._tokens import generate_keypair

_, RSA_PUBLIC = generate_keypair("RS256")
RSA_PRIVATE, _ = generate_keypair("RS256")


def noop_app(*args: Any) -> Any:
    return None


def test_shells_take_identical_keywords() -> None:
    asgi = inspect.signature(AuthMiddleware.__init__).parameters
    wsgi = inspect.signature(WSGIAuth.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in asgi.values() if p.name != "app"] == [
        (p.name, p.kind, p.default) for p in wsgi.values() if p.name != "app"
    ]
    for p in asgi.values():
        if p.name not in ("self", "app"):
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
    for name in [
        "strategy",
        "secret",
        "public_key",
        "jwks_url",
        "algorithms",
        "audience",
        "issuer",
        "leeway",
        "max_token_lifetime",
        "user_claim",
        "tenant_claim",
        "scopes_claim",
        "key_store",
        "exempt_paths",
        "optional",
        "required_scopes",
        "realm",
        "cache_size",
    ]:
        assert name in asgi, name


BAD: list[tuple[dict[str, Any], str]] = [
    ({}, "secret"),
    ({"secret": SECRET, "public_key": RSA_PUBLIC}, "secret"),
    ({"secret": "short"}, "secret"),
    ({"secret": 123}, "secret"),
    ({"secret": SECRET, "algorithms": ["none"]}, "algorithms"),
    ({"secret": SECRET, "algorithms": ["HS256", "RS256"]}, "algorithms"),
    ({"secret": SECRET, "algorithms": ["RS256"]}, "algorithms"),
    ({"secret": SECRET, "algorithms": []}, "algorithms"),
    ({"public_key": RSA_PUBLIC}, "algorithms"),
    ({"public_key": RSA_PUBLIC, "algorithms": ["HS256"]}, "algorithms"),
    ({"public_key": RSA_PUBLIC, "algorithms": ["ES256"]}, "public_key"),
    ({"public_key": RSA_PRIVATE, "algorithms": ["RS256"]}, "public_key"),
    ({"public_key": "not a key", "algorithms": ["RS256"]}, "public_key"),
    ({"public_key": b"\x30\x00garbage", "algorithms": ["RS256"]}, "public_key"),
    ({"jwks_url": "http://idp.example/jwks", "algorithms": ["RS256"]}, "jwks_url"),
    ({"jwks_url": "ftp://x", "algorithms": ["RS256"]}, "jwks_url"),
    ({"secret": SECRET, "strategy": "oauth"}, "strategy"),
    ({"secret": SECRET, "strategy": []}, "strategy"),
    ({"secret": SECRET, "strategy": object()}, "strategy"),
    ({"strategy": "api_key"}, "key_store"),
    ({"strategy": "api_key", "key_store": {}}, "key_store"),
    ({"strategy": "api_key", "key_store": InMemoryKeyStore(), "secret": SECRET}, "secret"),
    ({"secret": SECRET, "key_store": InMemoryKeyStore()}, "key_store"),
    ({"secret": SECRET, "leeway": "soon"}, "leeway"),
    ({"secret": SECRET, "max_token_lifetime": 0}, "max_token_lifetime"),
    ({"secret": SECRET, "audience": ""}, "audience"),
    ({"secret": SECRET, "audience": 3}, "audience"),
    ({"secret": SECRET, "issuer": 3}, "issuer"),
    ({"secret": SECRET, "user_claim": ""}, "user_claim"),
    ({"secret": SECRET, "tenant_claim": 5}, "tenant_claim"),
    ({"secret": SECRET, "scopes_claim": None}, "scopes_claim"),
    ({"secret": SECRET, "exempt_paths": "/health"}, "exempt_paths"),
    ({"secret": SECRET, "exempt_paths": ["health"]}, "exempt_paths"),
    ({"secret": SECRET, "optional": "yes"}, "optional"),
    ({"secret": SECRET, "required_scopes": "agents:run"}, "required_scopes"),
    ({"secret": SECRET, "required_scopes": ["bad scope"]}, "required_scopes"),
    ({"secret": SECRET, "optional": True, "required_scopes": ["a"]}, "required_scopes"),
    ({"secret": SECRET, "realm": 'a"b'}, "realm"),
    ({"secret": SECRET, "cache_size": -1}, "cache_size"),
    ({"secret": SECRET, "cache_size": True}, "cache_size"),
    ({"secret": SECRET, "api_key_header": "authorization"}, "api_key_header"),
    ({"secret": SECRET, "max_token_bytes": 10}, "max_token_bytes"),
    (
        {"jwks_url": "https://idp.example/jwks", "algorithms": ["RS256"], "jwks_cooldown": "x"},
        "jwks_cooldown",
    ),
]


@pytest.mark.parametrize("shell", [AuthMiddleware, WSGIAuth])
@pytest.mark.parametrize(("options", "option"), BAD)
def test_bad_options_fail_at_construction(shell: Any, options: dict[str, Any], option: str) -> None:
    with pytest.raises((ValueError, TypeError), match=option):
        shell(noop_app, **options)


def test_app_is_positional_and_options_keyword_only() -> None:
    with pytest.raises(TypeError):
        AuthMiddleware(noop_app, "jwt")  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        {"secret": SECRET},
        {"secret": (SECRET * 2).encode(), "algorithms": ["HS256", "HS384"]},
        {"public_key": RSA_PUBLIC, "algorithms": ["RS256", "PS256"]},
        {"public_key": RSA_PUBLIC.decode(), "algorithms": ["RS256"]},
        {"jwks_url": "https://idp.example/.well-known/jwks.json", "algorithms": ["ES256"]},
        {"jwks_url": "http://127.0.0.1:9/jwks", "algorithms": ["RS256"]},
    ],
)
def test_good_options(options: dict[str, Any]) -> None:
    AuthMiddleware(noop_app, **options)
    WSGIAuth(noop_app, **options)


def test_public_key_as_jwk_and_key_object() -> None:
    import json

    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    key = serialization.load_pem_public_key(RSA_PUBLIC)
    jwk = RSAAlgorithm.to_jwk(key)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for public in (key, jwk, json.loads(jwk), der):
        AuthMiddleware(noop_app, public_key=public, algorithms=["RS256"])
