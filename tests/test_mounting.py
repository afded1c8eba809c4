"""Path options are relative to the app, however it is mounted, and every shell agrees.

ASGI servers and routers keep the mount prefix in ``scope["path"]`` and name it in
``scope["root_path"]`` (Starlette ``Mount("/v1", app=...)``, ``uvicorn --root-path``); WSGI
puts it in ``SCRIPT_NAME`` and leaves ``PATH_INFO`` relative (werkzeug's
``DispatcherMiddleware``). ``exempt_paths`` and per-route rate-limit rules are written relative
to the wrapped app, so ``/health`` and ``/agents/{name}/run`` must match in all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask import Flask, jsonify
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client as WerkzeugClient

from agenthood_mw import AuthMiddleware, RateLimitMiddleware
from agenthood_mw.auth import mint_token
from agenthood_mw.ratelimit import RateLimitRule
from agenthood_mw.wsgi import AuthMiddleware as WSGIAuth
from agenthood_mw.wsgi import RateLimitMiddleware as WSGIRateLimit

SECRET = "mounting-test-secret-0123456789abcdef"
TOKEN = mint_token(secret=SECRET, user_id="alice")
AUTH = {"strategy": "jwt", "secret": SECRET, "exempt_paths": ["/health", "/café"]}
RULES = [RateLimitRule(window="1m", max=2, path="/agents/{name}/run", methods=["POST"])]
LIMITS = {"rules": RULES, "exempt_paths": ["/health"]}
#: (label, mount prefix, root_path given by the server)
MOUNTINGS = [("direct", "", ""), ("Mount('/v1')", "/v1", ""), ("root_path=/api", "/api", "/api")]


def asgi_app(prefix: str, root_path: str) -> Any:
    """Auth then rate limiting around a Starlette app, mounted at ``prefix``."""

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.user_id})

    inner = Starlette(
        routes=[
            Route("/health", endpoint),
            Route("/café", endpoint),
            Route("/me", endpoint),
            Route("/agents/{name}/run", endpoint, methods=["POST"]),
        ]
    )
    inner.add_middleware(RateLimitMiddleware, **LIMITS)
    inner.add_middleware(AuthMiddleware, **AUTH)
    if prefix and not root_path:
        return Starlette(routes=[Mount(prefix, app=inner)])
    return inner


def wsgi_app(prefix: str) -> Callable[..., Any]:
    """The same stack for Flask, mounted at ``prefix`` by werkzeug's dispatcher."""
    app = Flask(__name__)

    def endpoint(**_: str) -> Any:
        from flask import request

        return jsonify(user=request.environ["agenthood.identity"].user_id)

    app.add_url_rule("/health", "health", endpoint)
    app.add_url_rule("/café", "cafe", endpoint)
    app.add_url_rule("/me", "me", endpoint)
    app.add_url_rule("/agents/<name>/run", "run", endpoint, methods=["POST"])
    app.wsgi_app = WSGIAuth(  # type: ignore[method-assign]
        WSGIRateLimit(app.wsgi_app, **LIMITS), **AUTH
    )
    if not prefix:
        return app

    def not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("content-type", "text/plain")])
        return [b"not mounted"]

    return DispatcherMiddleware(not_found, {prefix: app})


REQUESTS: list[tuple[str, str, bool]] = [
    ("GET", "/health", False),  # exempt: no credential needed
    ("GET", "/café", False),  # exempt, non-ASCII
    ("GET", "/me", False),  # 401
    ("GET", "/me", True),
    *[("POST", "/agents/a/run", True)] * 4,  # per-route rule: max=2
    ("POST", "/agents/b/run", True),  # another agent, its own quota
    ("GET", "/health", False),  # exempt from the limiter too
]
EXPECTED = [200, 200, 401, 200, 200, 200, 429, 429, 200, 200]


async def asgi_statuses(prefix: str, root_path: str) -> list[int]:
    transport = httpx.ASGITransport(app=asgi_app(prefix, root_path), root_path=root_path)
    statuses = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for method, path, auth in REQUESTS:
            headers = {"authorization": f"Bearer {TOKEN}"} if auth else {}
            r = await client.request(method, prefix + path, headers=headers)
            statuses.append(r.status_code)
    return statuses


def wsgi_statuses(prefix: str) -> list[int]:
    client = WerkzeugClient(wsgi_app(prefix))
    statuses = []
    for method, path, auth in REQUESTS:
        headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
        statuses.append(client.open(prefix + path, method=method, headers=headers).status_code)
    return statuses


@pytest.mark.parametrize(("label", "prefix", "root_path"), MOUNTINGS)
async def test_asgi_path_options_are_relative_to_the_mount(
    label: str, prefix: str, root_path: str
) -> None:
    assert await asgi_statuses(prefix, root_path) == EXPECTED, label


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_wsgi_path_options_are_relative_to_script_name(prefix: str) -> None:
    assert wsgi_statuses(prefix) == EXPECTED


async def test_asgi_and_wsgi_give_the_same_answers_when_mounted() -> None:
    assert await asgi_statuses("/v1", "") == wsgi_statuses("/v1")


async def test_full_paths_do_not_match_relative_options() -> None:
    """Options are relative: ``/v1/health`` in ``exempt_paths`` does not exempt a mounted app's
    ``/health`` (and a look-alike prefix such as ``/v10`` is not stripped)."""

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"user": request.user.user_id})

    inner = Starlette(routes=[Route("/health", endpoint), Route("/v10/health", endpoint)])
    inner.add_middleware(AuthMiddleware, strategy="jwt", secret=SECRET, exempt_paths=["/v1/health"])
    outer = Starlette(routes=[Mount("/v1", app=inner)])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v1/health")).status_code == 401
        assert (await client.get("/v1/v10/health")).status_code == 401


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SCRIPT_NAME": "/v1", "PATH_INFO": "/health"}, "/health"),
        ({"SCRIPT_NAME": "/v1", "PATH_INFO": ""}, "/"),
        ({}, "/"),
        ({"PATH_INFO": "/caf\u00c3\u00a9"}, "/café"),  # PEP 3333: UTF-8 bytes as latin-1
        ({"PATH_INFO": "/\u00ff"}, "/\u00ff"),  # not UTF-8: left as the server gave it
    ],
)
def test_wsgi_route_path(environ: dict[str, str], expected: str) -> None:
    from agenthood_mw._wsgi import route_path

    assert route_path(environ) == expected
