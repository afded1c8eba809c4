"""Native WSGI ``AuthMiddleware`` (no ASGI bridge): same keywords, same core, same answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agenthood_mw._context import identity_var, reset_identity, set_identity
from agenthood_mw._core.authcore import TokenCache
from agenthood_mw._core.authflow import AuthRequest, authenticate, run_flow
from agenthood_mw._identity import Identity
from agenthood_mw._wsgi import STATE_KEY, BoundBody, WSGIApp, route_path, send_error
from agenthood_mw.auth._shell import AuthShell

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["IDENTITY_KEY", "AuthMiddleware"]

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
        settings = self.settings
        self._cache: TokenCache[Identity] = TokenCache(settings.cache_size, threadsafe=True)
        self._api_environ = (
            "HTTP_" + settings.api_key_header.upper().replace("-", "_")
            if settings.api_key_header
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
            outcome = run_flow(
                authenticate(self.settings, _request(environ, authorization, api_key))
            )
            if outcome.error is not None:
                return send_error(start_response, outcome.error)
            identity = outcome.identity
            assert identity is not None
            if authorization is not None and outcome.cache_until is not None:
                self._cache.put(authorization, identity, outcome.cache_until)
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


def _request(
    environ: WSGIEnvironment, authorization: str | None, api_key: str | None
) -> AuthRequest:
    forwarded: str | None = environ.get("HTTP_X_FORWARDED_FOR")
    return AuthRequest(
        authorization=[] if authorization is None else [authorization.encode("latin-1")],
        api_keys=[] if api_key is None else [api_key.encode("latin-1")],
        peer=environ.get("REMOTE_ADDR") or None,
        forwarded_for=[] if forwarded is None else [forwarded],
    )
