"""CORS with AuthMiddleware: preflights are answered by a CORS middleware placed outside it.

A preflight carries no credentials, so AuthMiddleware cannot let it through without letting an
unauthenticated request reach the app (an endpoint that does not dispatch on the method, such
as a mounted ASGI app, would run for anyone). The documented set-up answers preflights first.
"""

from __future__ import annotations

from typing import Any

import httpx
from auth_support import SECRET
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from agenthood_mw.auth import AuthMiddleware, mint_token

ORIGIN = "https://app.example"
PREFLIGHT = {"origin": ORIGIN, "access-control-request-method": "GET"}


def admin_app(calls: list[Any]) -> Any:
    """A raw ASGI app that answers every method (a mounted admin/tool app)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append((scope["method"], scope["user"].user_id))
        await JSONResponse({"all_users_data": ["secret"]})(scope, receive, send)

    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_preflight_to_a_method_blind_app_is_refused_without_cors() -> None:
    calls: list[Any] = []
    app = Starlette(
        routes=[Mount("/admin", app=admin_app(calls))],
        middleware=[Middleware(AuthMiddleware, strategy="jwt", secret=SECRET)],
    )
    async with client(app) as c:
        r = await c.request("OPTIONS", "/admin/export", headers=PREFLIGHT)
    assert r.status_code == 401
    assert "secret" not in r.text
    assert calls == []


async def test_cors_middleware_outside_answers_preflights_and_auth_still_applies() -> None:
    calls: list[Any] = []
    app = Starlette(
        routes=[Mount("/admin", app=admin_app(calls))],
        middleware=[
            # The first Middleware is the outermost: CORS answers preflights before auth.
            Middleware(
                CORSMiddleware,
                allow_origins=[ORIGIN],
                allow_methods=["GET", "POST"],
                allow_headers=["authorization"],
            ),
            Middleware(AuthMiddleware, strategy="jwt", secret=SECRET),
        ],
    )
    async with client(app) as c:
        r = await c.request("OPTIONS", "/admin/export", headers=PREFLIGHT)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert calls == []  # answered by CORSMiddleware, the app never ran
        # The actual request is authenticated; its 401 carries CORS headers the browser reads.
        r = await c.get("/admin/export", headers={"origin": ORIGIN})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert calls == []
        tok = mint_token(secret=SECRET, user_id="alice")
        r = await c.get(
            "/admin/export", headers={"origin": ORIGIN, "authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 200
    assert calls == [("GET", "alice")]
