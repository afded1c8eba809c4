"""Construction shared by the ASGI and WSGI ``AuthMiddleware`` (one keyword list)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from agenthood_mw._core.authcore import Authenticator
from agenthood_mw._core.authflow import AuthSettings
from agenthood_mw.auth._config import build_settings

__all__ = ["AuthShell"]


class AuthShell:
    """The constructor both shells share, so their keywords cannot drift apart.

    This signature is the one list of options: they are validated once by
    :func:`build_settings` into the frozen :attr:`settings` both shells read; a shell adds its
    own per-instance state (token cache, header names) in :meth:`_setup`.
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
        failed_auth_limit: str | None = "20/minute",
        failed_auth_storage: str = "memory://",
        failed_auth_storage_options: Mapping[str, Any] | None = None,
        trusted_proxies: Collection[str] = (),
    ) -> None:
        if not callable(app):
            raise TypeError(f"app: expected an {self._app_kind} application")
        options = dict(locals())  # every keyword above, by name: validated once
        del options["self"], options["app"]
        settings: AuthSettings = build_settings(options)
        self.app = app
        self.settings = settings
        self._exempt = settings.exempt if settings.exempt else None
        self._setup()

    def _setup(self) -> None:
        """Per-shell state derived from the validated options (override in a shell)."""
