"""Pure-ASGI ``AuthMiddleware``: moves header bytes into the core's flow and its answer out."""

from __future__ import annotations

import anyio.to_thread
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw._asgi import agenthood_state, route_path, send_error
from agenthood_mw._context import reset_identity, set_identity
from agenthood_mw._core.authcore import TokenCache
from agenthood_mw._core.authflow import AuthRequest, Flow, Outcome, authenticate
from agenthood_mw._identity import Identity
from agenthood_mw.auth._shell import AuthShell

__all__ = ["AuthMiddleware"]


class _Verified:
    """A request's caller as put in the scope: the identity and its Starlette credentials
    (built once per verification and kept with it in the verified-token cache)."""

    __slots__ = ("credentials", "identity")

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.credentials = AuthCredentials(sorted(identity.scopes))


class AuthMiddleware(AuthShell):
    """Authenticate every HTTP and WebSocket request before it reaches ``app``.

    On success ``scope["user"]`` is the :class:`~agenthood_mw.Identity`, ``scope["auth"]`` the
    Starlette ``AuthCredentials`` with its scopes, ``scope["state"]["agenthood"]["identity"]``
    the identity, and :func:`~agenthood_mw.current_identity` returns it during the call.
    Failures are RFC 6750 JSON errors (401/400/403, 503 when no signing key was ever
    obtained, 429 once a client address exceeds ``failed_auth_limit``); websockets are
    refused before ``accept``. ``lifespan`` and unknown scope types pass through untouched,
    as do ``exempt_paths`` (relative to the app: ``root_path`` is not part of them). CORS
    preflights are authenticated like any request: put Starlette's ``CORSMiddleware`` outside
    this middleware so it answers them first.

    Every option is keyword-only and validated here; see ``docs/auth.md`` for the full list.
    The WSGI twin :class:`agenthood_mw.wsgi.AuthMiddleware` takes the same keywords.
    """

    app: ASGIApp

    def _setup(self) -> None:
        settings = self.settings
        self._cache: TokenCache[_Verified] = TokenCache(settings.cache_size, threadsafe=False)
        self._api_header = settings.api_key_header.encode() if settings.api_key_header else None
        self._anonymous = _Verified(Identity.anonymous())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" and scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        verified: _Verified | None
        if self._exempt is not None and route_path(scope) in self._exempt:
            verified = self._anonymous  # never authenticated, never refused
        else:
            verified = self._cached(scope["headers"])
            if verified is None:
                outcome = await _drive(authenticate(self.settings, self._request(scope)))
                if outcome.error is not None:
                    await send_error(scope, send, outcome.error)
                    return
                verified = self._verified(scope["headers"], outcome)
        identity = verified.identity
        scope["user"] = identity
        scope["auth"] = verified.credentials
        agenthood_state(scope)["identity"] = identity
        token = set_identity(identity)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_identity(token)

    def _cached(self, headers: list[tuple[bytes, bytes]]) -> _Verified | None:
        """The hot path: a request whose only credential is one ``Authorization`` header
        verified before costs one cache lookup, keyed by the header's bytes."""
        authorization: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                if authorization is not None:
                    return None  # two credentials: the flow refuses them
                authorization = value
            elif name == self._api_header:
                return None
        return None if authorization is None else self._cache.get(authorization)

    def _request(self, scope: Scope) -> AuthRequest:
        headers = scope["headers"]
        client = scope.get("client")
        return AuthRequest(
            authorization=[v for k, v in headers if k == b"authorization"],
            api_keys=[v for k, v in headers if k == self._api_header],
            peer=client[0] if client else None,
            forwarded_for=[v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"],
        )

    def _verified(self, headers: list[tuple[bytes, bytes]], outcome: Outcome) -> _Verified:
        identity = outcome.identity
        assert identity is not None
        if not identity.is_authenticated:
            return self._anonymous
        verified = _Verified(identity)
        if outcome.cache_until is not None:
            key = next(v for k, v in headers if k == b"authorization")
            self._cache.put(key, verified, outcome.cache_until)
        return verified


async def _drive(flow: Flow[Outcome]) -> Outcome:
    """Run the core's authenticate flow: await a step's async form, run a blocking step in a
    worker thread, call any other step inline; hand results and exceptions back to it."""
    try:
        step = flow.send(None)
        while True:
            try:
                if step.run_async is not None:
                    result = await step.run_async()
                elif step.blocking:
                    result = await anyio.to_thread.run_sync(step.run)
                else:
                    result = step.run()
            except Exception as exc:  # handed to the flow, which decides what it means
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        outcome: Outcome = stop.value
        return outcome
