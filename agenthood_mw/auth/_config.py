"""Construction-time validation of the ``AuthMiddleware`` keywords (shared by both shells).

Every option is checked here once, with an error naming it; the shells keep the resulting
:class:`AuthSetup` and never look at the raw options again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agenthood_mw._core.authcore import Authenticator, Challenges, validate_scopes
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.jwt import (
    JWKSKeys,
    JWTSettings,
    algorithm_family,
    prepare_public_key,
    prepare_secret,
    validate_jwks_url,
)
from agenthood_mw._core.paths import PathSet
from agenthood_mw.auth._jwks import JWKSFetcher
from agenthood_mw.auth._keystore import KeyStore
from agenthood_mw.auth._strategies import APIKeyAuthenticator, JWTAuthenticator

__all__ = ["AuthSetup", "build_setup"]

_UNSET: Any = object()


@dataclass(frozen=True)
class AuthSetup:
    """The validated configuration both shells run on."""

    chain: tuple[Authenticator, ...]
    challenges: Challenges
    required_scopes: frozenset[str]
    optional: bool
    exempt: PathSet
    api_key_header: str | None
    cache_size: int
    max_token_bytes: int


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


def build_setup(
    *,
    strategy: object = "jwt",
    secret: object = None,
    public_key: object = None,
    jwks_url: object = None,
    algorithms: object = None,
    audience: object = None,
    issuer: object = None,
    leeway: object = 0,
    max_token_lifetime: object = "1d",  # noqa: S107
    user_claim: object = "sub",
    tenant_claim: object = "tenant",
    scopes_claim: object = "scope",
    key_store: object = None,
    exempt_paths: object = (),
    optional: object = False,
    required_scopes: object = (),
    realm: object = "agenthood",
    cache_size: object = 10_000,
    api_key_header: object = _UNSET,
    jwks_cache_ttl: object = "10m",
    jwks_cooldown: object = "30s",
    jwks_timeout: object = "5s",
    max_token_bytes: object = 8192,
) -> AuthSetup:
    """Validate every option; raise ``ValueError``/``TypeError`` naming the bad one."""
    strategies = _strategies(strategy)
    if not isinstance(optional, bool):
        raise TypeError("optional: expected True or False")
    required = validate_scopes(required_scopes, option="required_scopes")
    if optional and required:
        raise ValueError(
            "required_scopes: cannot be combined with optional=True (an anonymous caller "
            "never has scopes); check scopes per route instead"
        )
    if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
        raise ValueError("cache_size: expected an integer >= 0 (0 disables the cache)")
    if (
        isinstance(max_token_bytes, bool)
        or not isinstance(max_token_bytes, int)
        or not 256 <= max_token_bytes <= 1_000_000
    ):
        raise ValueError("max_token_bytes: expected an integer between 256 and 1000000")

    uses_jwt = "jwt" in strategies
    uses_keys = "api_key" in strategies
    if not uses_jwt:
        for name, value in (
            ("secret", secret),
            ("public_key", public_key),
            ("jwks_url", jwks_url),
            ("algorithms", algorithms),
            ("audience", audience),
            ("issuer", issuer),
        ):
            if value is not None:
                raise ValueError(f"{name}: only used with strategy 'jwt'")
    if key_store is not None and not uses_keys:
        raise ValueError("key_store: only used with strategy 'api_key'")
    if api_key_header is _UNSET:
        api_key_header = "x-api-key" if uses_keys else None
    if api_key_header is not None:
        if not isinstance(api_key_header, str) or not api_key_header.isascii():
            raise TypeError("api_key_header: expected a header name or None")
        if api_key_header.lower() in ("authorization", "cookie", "") or " " in api_key_header:
            raise ValueError("api_key_header: choose a dedicated header such as 'x-api-key'")
        api_key_header = api_key_header.lower()

    chain: list[Authenticator] = []
    for item in strategies:
        if item == "jwt":
            chain.append(
                _jwt(
                    secret=secret,
                    public_key=public_key,
                    jwks_url=jwks_url,
                    algorithms=algorithms,
                    audience=audience,
                    issuer=issuer,
                    leeway=leeway,
                    max_token_lifetime=max_token_lifetime,
                    user_claim=user_claim,
                    tenant_claim=tenant_claim,
                    scopes_claim=scopes_claim,
                    jwks_cache_ttl=jwks_cache_ttl,
                    jwks_cooldown=jwks_cooldown,
                    jwks_timeout=jwks_timeout,
                )
            )
        elif item == "api_key":
            if not isinstance(key_store, KeyStore):
                raise TypeError(
                    "key_store: strategy 'api_key' needs a KeyStore "
                    "(InMemoryKeyStore(), SQLiteKeyStore(path) or your own)"
                )
            chain.append(APIKeyAuthenticator(key_store))
        else:
            assert not isinstance(item, str)
            chain.append(item)
    if not isinstance(realm, str):
        raise TypeError("realm: expected a string")
    return AuthSetup(
        chain=tuple(chain),
        challenges=Challenges(realm),
        required_scopes=required,
        optional=optional,
        exempt=PathSet(exempt_paths, option="exempt_paths"),  # type: ignore[arg-type]
        api_key_header=api_key_header,
        cache_size=cache_size,
        max_token_bytes=max_token_bytes,
    )


def _jwt(
    *,
    secret: object,
    public_key: object,
    jwks_url: object,
    algorithms: object,
    audience: object,
    issuer: object,
    leeway: object,
    max_token_lifetime: object,
    user_claim: object,
    tenant_claim: object,
    scopes_claim: object,
    jwks_cache_ttl: object,
    jwks_cooldown: object,
    jwks_timeout: object,
) -> JWTAuthenticator:
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
    lifetime = (
        None
        if max_token_lifetime is None
        else parse_duration(max_token_lifetime, option="max_token_lifetime")
    )
    settings = JWTSettings(
        algorithms=algs,
        audience=aud,
        issuer=issuer,
        leeway=parse_duration(leeway, option="leeway", allow_zero=True),
        max_token_lifetime=lifetime,
        user_claim=_claim(user_claim, "user_claim"),
        tenant_claim=_claim(tenant_claim, "tenant_claim", nullable=True),
        scopes_claim=_claim(scopes_claim, "scopes_claim"),
    )
    if secret is not None:
        return JWTAuthenticator(settings, key=prepare_secret(secret, algs))
    if public_key is not None:
        return JWTAuthenticator(settings, key=prepare_public_key(public_key, algs, family))
    url = validate_jwks_url(jwks_url)
    keys = JWKSKeys(
        algs,
        family,
        ttl=parse_duration(jwks_cache_ttl, option="jwks_cache_ttl"),
        cooldown=parse_duration(jwks_cooldown, option="jwks_cooldown", allow_zero=True),
    )
    fetcher = JWKSFetcher(url, keys, timeout=parse_duration(jwks_timeout, option="jwks_timeout"))
    return JWTAuthenticator(settings, jwks=fetcher)
