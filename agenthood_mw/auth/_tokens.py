"""Minting JWTs for development and tests (production tokens come from your identity provider)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from agenthood_mw._core.authcore import MAX_EPOCH
from agenthood_mw._core.jwt import FAMILIES, prepare_secret

__all__ = ["mint_token"]


def mint_token(
    *,
    secret: Any,
    user_id: str,
    audience: str | None = "agenthood-api",
    scopes: Iterable[str] = (),
    ttl: float = 3600,
    tenant: str | None = None,
    algorithm: str = "HS256",
    issuer: str | None = None,
    kid: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT that ``AuthMiddleware`` configured with the matching key accepts.

    Args:
        secret: the HMAC secret (HS*: at least as many bytes as the hash, 32 for HS256, 48
            for HS384, 64 for HS512, as ``AuthMiddleware`` requires), or the private key (PEM
            or key object) for RS*/PS*/ES*/EdDSA.
        user_id: the ``sub`` claim.
        audience: the ``aud`` claim (``None`` to omit it).
        scopes: granted scopes, written as the space-separated ``scope`` claim.
        ttl: seconds until ``exp`` (negative for an already expired token; at most the
            seconds left until 9999-12-31).
        tenant: the ``tenant`` claim.
        algorithm: the JOSE algorithm (never ``none``).
        issuer: the ``iss`` claim.
        kid: the ``kid`` header (needed with a JWKS holding several keys).
        claims: extra claims, applied last.

    Raises:
        ValueError: ``secret: too short ...`` for an HMAC secret ``AuthMiddleware`` would refuse;
            ``ttl: ...`` for a ``ttl`` that is not a number or names no date before year 10000.
    """
    if algorithm not in FAMILIES:
        raise ValueError(f"algorithm: {algorithm!r} is not a supported signing algorithm")
    if FAMILIES[algorithm] == "HMAC":
        # AuthMiddleware refuses such a secret, so a token signed with it could never verify.
        secret = prepare_secret(secret, (algorithm,))
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id: must be a non-empty string")
    if isinstance(scopes, str):
        raise TypeError("scopes: expected a list of scope names, not a single string")
    now = int(time.time())
    # Compared before int(): an infinite or 10**400 ttl is a clear error, not an OverflowError.
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not -now <= ttl <= MAX_EPOCH - now
    ):
        raise ValueError("ttl: expected a number of seconds giving an exp between 1970 and 9999")
    payload: dict[str, Any] = {
        "sub": user_id,
        "iat": now,
        "exp": now + int(ttl),
        "jti": uuid.uuid4().hex,
    }
    if audience is not None:
        payload["aud"] = audience
    if issuer is not None:
        payload["iss"] = issuer
    if tenant is not None:
        payload["tenant"] = tenant
    scope_list = sorted(set(scopes))
    if scope_list:
        payload["scope"] = " ".join(scope_list)
    if claims:
        payload.update(claims)
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)
