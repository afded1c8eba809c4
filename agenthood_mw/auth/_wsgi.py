"""Native WSGI ``AuthMiddleware`` (no ASGI bridge): same keywords, same core, same answers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agenthood_mw._context import identity_var, reset_identity, set_identity
from agenthood_mw._core.authcore import (
    Authenticator,
    AuthError,
    MissingCredential,
    TokenCache,
    cache_expiry,
    check_identity,
    check_scopes,
    extract_credential,
    select_authenticator,
)
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw._wsgi import STATE_KEY, BoundBody, WSGIApp, route_path, send_error
from agenthood_mw.auth._config import build_setup

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["IDENTITY_KEY", "AuthMiddleware"]

logger = logging.getLogger("agenthood_mw.auth")

#: ``environ`` key holding the request's :class:`~agenthood_mw.Identity`.
IDENTITY_KEY = "agenthood.identity"


class AuthMiddleware:
    """Authenticate every request before it reaches the WSGI ``app`` (Flask, Django, ...).

    On success ``environ["agenthood.identity"]`` and ``environ["agenthood.state"]["identity"]``
    hold the :class:`~agenthood_mw.Identity`, and :func:`~agenthood_mw.current_identity`
    returns it while ``app`` runs. Failures are the same RFC 6750 JSON errors as the ASGI
    :class:`agenthood_mw.AuthMiddleware`, which takes exactly the same keywords.

    ``current_identity()`` also works while the server consumes a streamed response body
    (a generator) and while it closes it. ``exempt_paths`` match ``PATH_INFO`` (relative to
    ``SCRIPT_NAME``, like the ASGI shell's paths are relative to ``root_path``).

    ``Authorization`` headers repeated by the client reach WSGI joined by a comma; such a value
    is refused with 400 like two headers are under ASGI.
    """

    def __init__(
        self,
        app: WSGIApp,
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
        self._cache: TokenCache[Identity] = TokenCache(setup.cache_size, threadsafe=True)
        self._exempt = setup.exempt if setup.exempt else None
        self._api_environ = (
            "HTTP_" + setup.api_key_header.upper().replace("-", "_")
            if setup.api_key_header
            else None
        )
        self._challenges = setup.challenges
        self._required = setup.required_scopes

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        authorization: str | None = environ.get("HTTP_AUTHORIZATION")
        api_key: str | None = environ.get(self._api_environ) if self._api_environ else None
        identity: Identity | None = None
        if self._exempt is not None and route_path(environ) in self._exempt:
            identity = Identity.anonymous()
        elif authorization is not None and api_key is None:
            identity = self._cache.get(authorization)
        if identity is None:
            result = self._authenticate(authorization, api_key)
            if isinstance(result, HTTPError):
                return send_error(start_response, result)
            identity = result
        environ[IDENTITY_KEY] = identity
        state = environ.get(STATE_KEY)
        if state is None:
            environ[STATE_KEY] = {"identity": identity}
        else:
            state["identity"] = identity
        token = set_identity(identity)
        try:
            body = self.app(environ, start_response)
        finally:
            reset_identity(token)
        if type(body) is list or type(body) is tuple:
            return body  # nothing of the app runs while a list is sent
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            return body  # left recognisable for the server's sendfile path
        return BoundBody(body, identity_var, identity)

    def _authenticate(self, authorization: str | None, api_key: str | None) -> Identity | HTTPError:
        setup = self.setup
        authenticator: Authenticator | None = None
        try:
            credential = extract_credential(
                [] if authorization is None else [authorization.encode("latin-1")],
                [] if api_key is None else [api_key.encode("latin-1")],
                api_key_source=setup.api_key_header or "",
                max_length=setup.max_token_bytes,
            )
            if credential is None:
                if setup.optional:
                    return Identity.anonymous()
                raise MissingCredential("no credential")
            authenticator = select_authenticator(setup.chain, credential)
            identity = check_identity(authenticator.authenticate(credential))
            check_scopes(identity, self._required)
        except AuthError as exc:
            return self._challenges.for_error(exc, self._required)
        except Exception as exc:
            # Only the type at ERROR: an exception text may quote the credential.
            name = getattr(authenticator, "name", "?")
            logger.error("authenticator %r failed: %s", name, type(exc).__name__)
            logger.debug("authenticator %r traceback", name, exc_info=exc)
            return self._challenges.unavailable
        if (
            authorization is not None
            and credential.source == "authorization"
            and getattr(authenticator, "cacheable", False)
        ):
            expires = cache_expiry(identity)
            if expires is not None:
                self._cache.put(authorization, identity, expires)
        return identity
