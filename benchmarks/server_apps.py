"""The apps of the real-server benchmark (``bench_server.py``), one per variant.

uvicorn imports this module with ``--factory server_apps:make`` and picks the variant from
``BENCH_VARIANT``. Every variant serves the same trivial route (``GET /agents/dev/run`` ->
``ok``) so that what differs is the middleware in front of it:

* ``bare``: the route alone;
* ``full``: ``AuthMiddleware`` (HS256 JWT) -> ``RateLimitMiddleware`` (memory) ->
  ``CostMeterMiddleware`` (memory ledger and traces), the stack of the design;
* ``full-redis-sqlite``: the same with the rate limit in Redis (``BENCH_REDIS_URL``, own key
  prefix) and the ledger and traces in a SQLite file (``BENCH_SQLITE_PATH``);
* ``peer``: Starlette's ``AuthenticationMiddleware`` with a PyJWT backend + slowapi's
  ``SlowAPIASGIMiddleware`` (memory), the stack a user would otherwise assemble.

The limits are set so high that every request is admitted: the admitted path is what is timed.
"""

from __future__ import annotations

import os
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

SECRET = "bench-secret-" + "x" * 40
AUDIENCE = "agenthood-api"
HIGH = 10**9


def _route_app() -> Starlette:
    async def run(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/agents/{name}/run", run, methods=["GET", "POST"])])


def _full(rate_storage: str, ledger: str) -> Any:
    from agenthood_mw import AuthMiddleware, CostMeterMiddleware, PriceTable, RateLimitMiddleware

    prices = PriceTable({"gpt-4o": {"input": "2.50", "output": "10.00"}})
    extra: dict[str, Any] = {}
    if rate_storage != "memory://":
        extra["key_prefix"] = os.environ.get("BENCH_KEY_PREFIX", "agenthood-bench:")
    app: Any = CostMeterMiddleware(_route_app(), prices=prices, ledger=ledger)
    app = RateLimitMiddleware(app, window="1m", max=HIGH, storage=rate_storage, **extra)
    return AuthMiddleware(app, strategy="jwt", secret=SECRET, audience=AUDIENCE)


def _peer() -> Any:
    from slowapi import Limiter
    from slowapi.errors import RateLimitExceeded
    from slowapi.extension import _rate_limit_exceeded_handler
    from slowapi.middleware import SlowAPIASGIMiddleware
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        SimpleUser,
    )
    from starlette.middleware.authentication import AuthenticationMiddleware

    class JWTBackend(AuthenticationBackend):
        async def authenticate(self, conn: Any) -> Any:
            header = conn.headers.get("authorization")
            if not header:
                return None
            _scheme, _, token = header.partition(" ")
            try:
                claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE)
            except jwt.PyJWTError as exc:
                raise AuthenticationError("invalid token") from exc
            return AuthCredentials(claims.get("scope", "").split()), SimpleUser(claims["sub"])

    limiter = Limiter(
        key_func=lambda request: request.user.display_name,
        default_limits=[f"{HIGH}/minute"],
        storage_uri="memory://",
    )
    app = _route_app()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    app.add_middleware(SlowAPIASGIMiddleware)
    app.add_middleware(AuthenticationMiddleware, backend=JWTBackend())
    return app


def make() -> Any:
    """The app of ``BENCH_VARIANT`` (uvicorn ``--factory`` target)."""
    variant = os.environ.get("BENCH_VARIANT", "bare")
    if variant == "bare":
        return _route_app()
    if variant == "full":
        return _full("memory://", "memory://")
    if variant == "full-redis-sqlite":
        return _full(os.environ["BENCH_REDIS_URL"], "sqlite:///" + os.environ["BENCH_SQLITE_PATH"])
    if variant == "peer":
        return _peer()
    raise SystemExit(f"unknown BENCH_VARIANT {variant!r}")
