"""Construction shared by the ASGI and WSGI ``AuthMiddleware`` (one keyword list)."""

from __future__ import annotations

from typing import Any, ClassVar

from agenthood_mw._core.authcore import Authenticator
from agenthood_mw.auth._config import build_setup

__all__ = ["AuthShell"]


class AuthShell:
    """The constructor both shells share, so their keywords cannot drift apart.

    Every option is validated by :func:`build_setup`; a shell adds its own per-instance state
    (token cache, header names) in :meth:`_setup`.
    """

    _app_kind: ClassVar[str] = "ASGI"

    def __init__(
        self,
        app: Any,
        *,
        strategy: str | Authenticator | list[str | Authenticator] = "jwt",
        secret: str | bytes | None = None,
        public_key: Any = None,
        jwks_url: str | None = None,
        algorithms: list[str] | tuple[str, ...] | None = None,
        audience: str | list[str] | None = None,
        issuer: str | None = None,
        leeway: float | str = 0,
        max_token_lifetime: float | str | None = "1d",  # noqa: S107
        user_claim: str = "sub",
        tenant_claim: str | None = "tenant",
        scopes_claim: str = "scope",
        key_store: Any = None,
        exempt_paths: list[str] | tuple[str, ...] = (),
        optional: bool = False,
        required_scopes: list[str] | tuple[str, ...] | frozenset[str] = (),
        realm: str = "agenthood",
        cache_size: int = 10_000,
        api_key_header: str | None = "auto",
        jwks_cache_ttl: float | str = "10m",
        jwks_cooldown: float | str = "30s",
        jwks_timeout: float | str = "5s",
        max_token_bytes: int = 8192,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app: expected an {self._app_kind} application")
        options: dict[str, Any] = {}
        if api_key_header != "auto":
            options["api_key_header"] = api_key_header
        setup = build_setup(
            strategy=strategy,
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
            key_store=key_store,
            exempt_paths=exempt_paths,
            optional=optional,
            required_scopes=required_scopes,
            realm=realm,
            cache_size=cache_size,
            jwks_cache_ttl=jwks_cache_ttl,
            jwks_cooldown=jwks_cooldown,
            jwks_timeout=jwks_timeout,
            max_token_bytes=max_token_bytes,
            **options,
        )
        self.app = app
        self.setup = setup
        self._exempt = setup.exempt if setup.exempt else None
        self._challenges = setup.challenges
        self._required = setup.required_scopes
        self._setup()

    def _setup(self) -> None:
        """Per-shell state derived from the validated options (override in a shell)."""
