"""Native WSGI ``AuthMiddleware`` (no ASGI bridge): same keywords, same core, same answers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

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
from agenthood_mw.auth._shell import AuthShell

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["IDENTITY_KEY", "AuthMiddleware"]

logger = logging.getLogger("agenthood_mw.auth")

#: ``environ`` key holding the request's :class:`~agenthood_mw.Identity`.
IDENTITY_KEY = "agenthood.identity"


class AuthMiddleware(AuthShell):
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

    _app_kind = "WSGI"
    app: WSGIApp

    def _setup(self) -> None:
        setup = self.setup
        self._cache: TokenCache[Identity] = TokenCache(setup.cache_size, threadsafe=True)
        self._api_environ = (
            "HTTP_" + setup.api_key_header.upper().replace("-", "_")
            if setup.api_key_header
            else None
        )

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
