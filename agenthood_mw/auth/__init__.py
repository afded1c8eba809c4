"""Authentication: ``AuthMiddleware`` (ASGI; the WSGI twin is in :mod:`agenthood_mw.wsgi`).

Strategies: ``"jwt"`` (a secret, a public key or a JWKS URL), ``"api_key"`` (``ah_`` keys in a
:class:`KeyStore`), or any :class:`Authenticator`; chain them with a list. Invalid credentials
are counted per client address (``failed_auth_limit``, 429 past it). See ``docs/auth.md``.
"""

from __future__ import annotations

from agenthood_mw._core.apikeys import APIKeyRecord
from agenthood_mw.auth._asgi import AuthMiddleware
from agenthood_mw.auth._fastapi import require_identity
from agenthood_mw.auth._keystore import (
    CreatedKey,
    InMemoryKeyStore,
    KeyStore,
    SQLiteKeyStore,
    create_api_key,
)
from agenthood_mw.auth._protocol import (
    Authenticator,
    AuthUnavailable,
    Credential,
    InvalidCredential,
)
from agenthood_mw.auth._tokens import mint_token

__all__ = [
    "APIKeyRecord",
    "AuthMiddleware",
    "AuthUnavailable",
    "Authenticator",
    "CreatedKey",
    "Credential",
    "InMemoryKeyStore",
    "InvalidCredential",
    "KeyStore",
    "SQLiteKeyStore",
    "create_api_key",
    "mint_token",
    "require_identity",
]
