"""WSGI ``RateLimitMiddleware``: same keywords and engine as the ASGI class."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

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

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        xff = environ.get("HTTP_X_FORWARDED_FOR")
        verdict = self.engine.decide_sync(
            environ.get(IDENTITY_KEY),
            environ.get("REQUEST_METHOD", "GET"),
            route_path(environ),
            client=environ.get("REMOTE_ADDR") or None,
            forwarded_for=[xff] if xff else (),
            request=environ,
        )
        if not verdict.limited:
            return self.app(environ, start_response)
        agenthood_state(environ)["rate_limit"] = verdict.decision
        if verdict.error is not None:
            return send_error(start_response, verdict.error)
        if not verdict.headers:
            return self.app(environ, start_response)
        extra = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in verdict.headers]

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start_with_headers)
