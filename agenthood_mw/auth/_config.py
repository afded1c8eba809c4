"""Construction-time validation of the ``AuthMiddleware`` keywords (shared by both shells).

Every option is checked here once, with an error naming it, into one frozen
:class:`~agenthood_mw._core.authflow.AuthSettings`; the shells keep it and never look at the
raw options again. The keyword list itself is written once, in ``AuthShell.__init__``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agenthood_mw._core.authcore import Authenticator, Challenges, validate_scopes
from agenthood_mw._core.authflow import AuthSettings
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.jwt import (
    MAX_LEEWAY,
    JWKSKeys,
    JWTSettings,
    algorithm_family,
    prepare_public_key,
    prepare_secret,
    validate_jwks_url,
)
from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.ratelimit import ClientAddress
from agenthood_mw.auth._failures import build_failure_limit
from agenthood_mw.auth._jwks import JWKSFetcher
from agenthood_mw.auth._keystore import KeyStore
from agenthood_mw.auth._strategies import APIKeyAuthenticator, JWTAuthenticator

__all__ = ["build_settings"]

_JWT_ONLY = ("secret", "public_key", "jwks_url", "algorithms", "audience", "issuer")


def _duration(value: object, option: str, *, allow_zero: bool = False) -> float:
    """``parse_duration``, with a number too large for a float refused like any bad value."""
    try:
        return parse_duration(value, option=option, allow_zero=allow_zero)
    except OverflowError:
        raise ValueError(f"{option}: must be a positive duration of sensible size") from None


def _claim(value: object, option: str, *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{option}: expected a non-empty claim name")
    return value


def _strategies(strategy: object) -> list[str | Authenticator]:
    items: Sequence[object]
    if isinstance(strategy, str | Authenticator):
        items = [strategy]
    elif isinstance(strategy, list | tuple):
        items = strategy
    else:
        raise TypeError("strategy: expected 'jwt', 'api_key', an Authenticator, or a list of them")
    if not items:
        raise ValueError("strategy: give at least one strategy")
    result: list[str | Authenticator] = []
    for item in items:
        if isinstance(item, str):
            if item not in ("jwt", "api_key"):
                raise ValueError(f"strategy: unknown strategy {item!r}; use 'jwt' or 'api_key'")
            if item in result:
                raise ValueError(f"strategy: {item!r} listed twice")
        elif not isinstance(item, Authenticator):
            raise TypeError(
                "strategy: custom strategies must implement the Authenticator protocol "
                "(name, recognizes(credential), authenticate(credential))"
            )
        result.append(item)
    return result


def _api_key_header(value: object, uses_keys: bool) -> str | None:
    if value == "auto":
        return "x-api-key" if uses_keys else None
    if value is None:
        return None
    if not isinstance(value, str) or not value.isascii():
        raise TypeError("api_key_header: expected a header name or None")
    if value.lower() in ("authorization", "cookie", "") or " " in value:
        raise ValueError("api_key_header: choose a dedicated header such as 'x-api-key'")
    return value.lower()


def _bounded_int(value: object, option: str, low: int, high: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{option}: expected an integer {hint}")
    return value


def build_settings(options: Mapping[str, Any]) -> AuthSettings:
    """Validate every option of ``AuthMiddleware``; raise ``ValueError``/``TypeError`` naming
    the bad one. ``options`` holds every keyword of ``AuthShell.__init__`` (no defaults here).
    """
    strategies = _strategies(options["strategy"])
    optional = options["optional"]
    if not isinstance(optional, bool):
        raise TypeError("optional: expected True or False")
    required = validate_scopes(options["required_scopes"], option="required_scopes")
    if optional and required:
        raise ValueError(
            "required_scopes: cannot be combined with optional=True (an anonymous caller "
            "never has scopes); check scopes per route instead"
        )
    cache_size = _bounded_int(
        options["cache_size"], "cache_size", 0, 10**9, "between 0 and 10**9 (0 disables the cache)"
    )
    max_token_bytes = _bounded_int(
        options["max_token_bytes"], "max_token_bytes", 256, 1_000_000, "between 256 and 1000000"
    )
    uses_keys = "api_key" in strategies
    if "jwt" not in strategies:
        for name in _JWT_ONLY:
            if options[name] is not None:
                raise ValueError(f"{name}: only used with strategy 'jwt'")
    if options["key_store"] is not None and not uses_keys:
        raise ValueError("key_store: only used with strategy 'api_key'")
    api_key_header = _api_key_header(options["api_key_header"], uses_keys)
    chain: list[Authenticator] = []
    for item in strategies:
        if item == "jwt":
            chain.append(_jwt(options))
        elif item == "api_key":
            key_store = options["key_store"]
            if not isinstance(key_store, KeyStore):
                raise TypeError(
                    "key_store: strategy 'api_key' needs a KeyStore "
                    "(InMemoryKeyStore(), SQLiteKeyStore(path) or your own)"
                )
            chain.append(APIKeyAuthenticator(key_store))
        else:
            assert not isinstance(item, str)
            chain.append(item)
    return AuthSettings(
        chain=tuple(chain),
        challenges=Challenges(options["realm"]),
        required_scopes=required,
        optional=optional,
        exempt=PathSet(options["exempt_paths"], option="exempt_paths"),
        api_key_header=api_key_header,
        cache_size=cache_size,
        max_token_bytes=max_token_bytes,
        failure_limit=build_failure_limit(
            options["failed_auth_limit"],
            options["failed_auth_storage"],
            options["failed_auth_storage_options"],
        ),
        # failures are counted per address as the rate limiter keys anonymous callers: IPv6
        # grouped by its /64 (one subscriber's usual allocation), IPv4-mapped as IPv4
        client_address=ClientAddress(options["trusted_proxies"], ipv6_prefix=64),
    )


def _jwt(options: Mapping[str, Any]) -> JWTAuthenticator:
    secret, public_key, jwks_url = options["secret"], options["public_key"], options["jwks_url"]
    algorithms, audience, issuer = options["algorithms"], options["audience"], options["issuer"]
    given = [
        n
        for n, v in (("secret", secret), ("public_key", public_key), ("jwks_url", jwks_url))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "secret: strategy 'jwt' needs exactly one of secret=, public_key= or jwks_url= "
            f"(got {given or 'none'})"
        )
    if algorithms is None:
        if secret is None:
            raise ValueError(
                "algorithms: list the accepted algorithms explicitly for public_key=/jwks_url=, "
                "e.g. algorithms=['RS256']"
            )
        algorithms = ["HS256"]
    algs, family = algorithm_family(algorithms)
    if secret is not None and family != "HMAC":
        raise ValueError(f"algorithms: secret= verifies HS256/HS384/HS512 only, not {list(algs)}")
    if secret is None and family == "HMAC":
        raise ValueError("algorithms: HS* algorithms need secret=, not public_key=/jwks_url=")

    aud: str | tuple[str, ...] | None
    if audience is None or isinstance(audience, str):
        aud = audience
        if aud == "":
            raise ValueError("audience: must not be empty")
    elif (
        isinstance(audience, list | tuple)
        and audience
        and all(isinstance(a, str) and a for a in audience)
    ):
        aud = tuple(audience)
    else:
        raise TypeError("audience: expected a string or a list of strings")
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        raise TypeError("issuer: expected a non-empty string")
    lifetime = options["max_token_lifetime"]
    leeway = _duration(options["leeway"], "leeway", allow_zero=True)
    if leeway > MAX_LEEWAY:
        raise ValueError(
            f"leeway: at most {MAX_LEEWAY:g} seconds (a clock skew allowance, not a grace "
            f"period for expired tokens); got {options['leeway']!r}"
        )
    settings = JWTSettings(
        algorithms=algs,
        audience=aud,
        issuer=issuer,
        leeway=leeway,
        max_token_lifetime=None if lifetime is None else _duration(lifetime, "max_token_lifetime"),
        user_claim=_claim(options["user_claim"], "user_claim"),
        tenant_claim=_claim(options["tenant_claim"], "tenant_claim", nullable=True),
        scopes_claim=_claim(options["scopes_claim"], "scopes_claim"),
    )
    if secret is not None:
        return JWTAuthenticator(settings, key=prepare_secret(secret, algs))
    if public_key is not None:
        return JWTAuthenticator(settings, key=prepare_public_key(public_key, algs, family))
    url = validate_jwks_url(jwks_url)
    keys = JWKSKeys(
        algs,
        family,
        ttl=_duration(options["jwks_cache_ttl"], "jwks_cache_ttl"),
        cooldown=_duration(options["jwks_cooldown"], "jwks_cooldown", allow_zero=True),
    )
    fetcher = JWKSFetcher(url, keys, timeout=_duration(options["jwks_timeout"], "jwks_timeout"))
    return JWTAuthenticator(settings, jwks=fetcher)
