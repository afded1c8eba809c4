"""Pure-ASGI ``AuthMiddleware``: moves header bytes into the core and its decision out."""

from __future__ import annotations

import logging
from typing import Any

import anyio.to_thread
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw._asgi import route_path, send_error
from agenthood_mw._context import identity_var
from agenthood_mw._core.authcore import (
    Authenticator,
    AuthError,
    Credential,
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
from agenthood_mw.auth._shell import AuthShell

__all__ = ["AuthMiddleware"]

logger = logging.getLogger("agenthood_mw.auth")

_Entry = tuple[Identity, AuthCredentials]
# ``current_identity()``'s ContextVar, bound and reset without a wrapper call per request.
_bind = identity_var.set
_unbind = identity_var.reset


class AuthMiddleware(AuthShell):
    """Authenticate every HTTP and WebSocket request before it reaches ``app``.

    On success ``scope["user"]`` is the :class:`~agenthood_mw.Identity`, ``scope["auth"]`` the
    Starlette ``AuthCredentials`` with its scopes, ``scope["state"]["agenthood"]["identity"]``
    the identity, and :func:`~agenthood_mw.current_identity` returns it during the call.
    Failures are RFC 6750 JSON errors (401/400/403, 503 when no signing key was ever
    obtained); websockets are refused before ``accept``. ``lifespan`` and unknown scope types
    pass through untouched, as do ``exempt_paths`` (relative to the app: ``root_path`` is not
    part of them). CORS preflights are authenticated like any request: put Starlette's
    ``CORSMiddleware`` outside this middleware so it answers them first.

    Every option is keyword-only and validated here; see ``docs/auth.md`` for the full list.
    The WSGI twin :class:`agenthood_mw.wsgi.AuthMiddleware` takes the same keywords.
    """

    app: ASGIApp

    def _setup(self) -> None:
        setup = self.setup
        self._cache: TokenCache[_Entry] = TokenCache(setup.cache_size, threadsafe=False)
        self._cache_get = self._cache.get
        self._api_header = setup.api_key_header.encode() if setup.api_key_header else None
        self._anonymous: _Entry = (Identity.anonymous(), AuthCredentials())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        authorization: bytes | None = None
        extra: list[bytes] | None = None  # a second Authorization or any API-key header
        api_header = self._api_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
                else:
                    extra = [*(extra or ()), value]
            elif name == api_header:
                extra = [*(extra or ()), value]
        entry: _Entry | None = None
        if self._exempt is not None and route_path(scope) in self._exempt:
            entry = self._anonymous  # never authenticated, never refused
        elif authorization is not None and extra is None:
            entry = self._cache_get(authorization)  # the hot path: one lookup
        if entry is None:
            result = await self._authenticate(scope["headers"])
            if isinstance(result, HTTPError):
                await send_error(scope, send, result)
                return
            entry = result
        identity = entry[0]
        scope["user"] = identity
        scope["auth"] = entry[1]
        state = scope.get("state")
        shared: dict[str, Any]
        if state is None:
            shared = {"identity": identity}
            scope["state"] = {"agenthood": shared}
        else:
            found: dict[str, Any] | None = state.get("agenthood")
            if found is None:
                shared = {"identity": identity}
                state["agenthood"] = shared
            else:
                shared = found
                shared["identity"] = identity
        token = _bind(identity)
        try:
            await self.app(scope, receive, send)
        finally:
            _unbind(token)

    async def _authenticate(self, headers: list[tuple[bytes, bytes]]) -> _Entry | HTTPError:
        setup = self.setup
        authorization = [v for k, v in headers if k == b"authorization"]
        api_keys = [v for k, v in headers if k == self._api_header]
        authenticator: Authenticator | None = None
        try:
            credential = extract_credential(
                authorization,
                api_keys,
                api_key_source=setup.api_key_header or "",
                max_length=setup.max_token_bytes,
            )
            if credential is None:
                if setup.optional:
                    return self._anonymous
                raise MissingCredential("no credential")
            authenticator = select_authenticator(setup.chain, credential)
            identity = check_identity(await _invoke(authenticator, credential))
            check_scopes(identity, self._required)
        except AuthError as exc:
            return self._challenges.for_error(exc, self._required)
        except Exception as exc:
            # A broken custom authenticator or store: logged, never shown to the client.
            # Only the type at ERROR: an exception text may quote the credential.
            name = getattr(authenticator, "name", "?")
            logger.error("authenticator %r failed: %s", name, type(exc).__name__)
            logger.debug("authenticator %r traceback", name, exc_info=exc)
            return self._challenges.unavailable
        entry: _Entry = (identity, AuthCredentials(sorted(identity.scopes)))
        if (
            len(authorization) == 1
            and credential.source == "authorization"
            and getattr(authenticator, "cacheable", False)
        ):
            expires = cache_expiry(identity)
            if expires is not None:
                self._cache.put(authorization[0], entry, expires)
        return entry


async def _invoke(authenticator: Authenticator, credential: Credential) -> Identity:
    method = getattr(authenticator, "authenticate_async", None)
    if method is not None:
        result: Identity = await method(credential)
        return result
    if getattr(authenticator, "blocking", False):
        return await anyio.to_thread.run_sync(authenticator.authenticate, credential)
    return authenticator.authenticate(credential)
