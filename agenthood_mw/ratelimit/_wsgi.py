"""WSGI ``RateLimitMiddleware``: same keywords and decisions as the ASGI class."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from agenthood_mw._core.ratelimit import UNAVAILABLE
from agenthood_mw._wsgi import WSGIApp, agenthood_state, route_path, send_error
from agenthood_mw.ratelimit._base import RateLimitBase

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["RateLimitMiddleware"]

#: ``environ`` key where the WSGI ``AuthMiddleware`` puts the :class:`Identity`.
IDENTITY_KEY = "agenthood.identity"


class RateLimitMiddleware(RateLimitBase):
    """Per-user rate limits for any WSGI app (Flask, Django, gunicorn workers).

    Same keywords and semantics as :class:`agenthood_mw.RateLimitMiddleware`; ``key=`` and
    ``cost=`` callables receive the WSGI ``environ``. The user is read from
    ``environ["agenthood.identity"]`` (set by the WSGI ``AuthMiddleware``). Several gunicorn
    workers need ``storage="redis://..."`` to share one quota.
    """

    _app_kind = "WSGI"
    app: WSGIApp

    def _key(self, environ: WSGIEnvironment) -> str | None:
        if self.key_func is not None:
            return self.custom_key(environ)
        key = self.user_key(environ.get(IDENTITY_KEY))
        if key is not None:
            return key
        peer = environ.get("REMOTE_ADDR") or None
        if self.client_address.enabled:
            xff = environ.get("HTTP_X_FORWARDED_FOR")
            return self.address_key(self.client_address.resolve(peer, [xff] if xff else []))
        return self.address_key(peer or "unknown")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = route_path(environ)
        if self.has_exempt and path in self.exempt:
            return self.app(environ, start_response)
        ident = self._key(environ)
        if ident is None:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        rules, items = self.items(method, path, ident, self.request_cost(environ))
        if not rules:
            return self.app(environ, start_response)
        try:
            outcomes = self.backend.hit_sync(items)
        except self.backend.errors as exc:
            self.failures.record(exc, fail_open=self.fail_open)
            agenthood_state(environ)["rate_limit"] = None
            if self.fail_open:
                return self.app(environ, start_response)
            return send_error(start_response, UNAVAILABLE)
        verdict = self.planner.verdict(rules, outcomes)
        agenthood_state(environ)["rate_limit"] = verdict.decision
        if verdict.error is not None:
            return send_error(start_response, verdict.error)
        if not verdict.headers:
            return self.app(environ, start_response)
        extra = verdict.headers

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start_with_headers)
