"""``exempt_paths`` match exactly what is configured, in every layer and both shells (issue 11
#6): exempting ``/health`` does not exempt ``/health/`` (another route in Starlette, Flask and
under a mount), directly and under a mount (``root_path`` / ``SCRIPT_NAME``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from agenthood_mw import AuthMiddleware, CostMeterMiddleware, PriceTable, RateLimitMiddleware
from agenthood_mw import wsgi as agenthood_wsgi

SECRET = "exact-paths-secret-" + "x" * 40
PRICES = PriceTable({"m": {"input": "1", "output": "2"}})
EXEMPT = {"exempt_paths": ["/health", "/static/*"]}


async def asgi_ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def build(layer: str, shell: str) -> Any:
    asgi = shell == "asgi"
    if layer == "auth":
        cls: Any = AuthMiddleware if asgi else agenthood_wsgi.AuthMiddleware
        return cls(asgi_ok if asgi else wsgi_ok, strategy="jwt", secret=SECRET, **EXEMPT)
    if layer == "rate limit":
        cls = RateLimitMiddleware if asgi else agenthood_wsgi.RateLimitMiddleware
        return cls(asgi_ok if asgi else wsgi_ok, window="1m", max=100, **EXEMPT)
    cls = CostMeterMiddleware if asgi else agenthood_wsgi.CostMeterMiddleware
    return cls(asgi_ok if asgi else wsgi_ok, prices=PRICES, on_alert=None, **EXEMPT)


def exempted(layer: str, status: int, headers: Any) -> bool:
    """Whether the layer let the request through untouched."""
    if layer == "auth":
        return status == 200  # no credential: 401 unless exempt
    if layer == "rate limit":
        return "ratelimit" not in headers
    return "x-agenthood-run-id" not in headers


async def asgi_answer(app: Any, path: str, mount: str) -> tuple[int, Any]:
    if mount:
        app = Starlette(routes=[Mount(mount, app=app)])
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get(mount + path)
    return r.status_code, r.headers


def wsgi_answer(app: Any, path: str, mount: str) -> tuple[int, Any]:
    if mount:
        app = DispatcherMiddleware(wsgi_ok, {mount: app})
    r = Client(app).get(mount + path, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    return r.status_code, r.headers


CASES = [
    ("/health", True),
    ("/health/", False),
    ("/healthz", False),
    ("/health/x", False),
    ("/static/", True),
    ("/static/app.css", True),
    ("/static", False),
    ("/staticfoo", False),
]


@pytest.mark.parametrize("mount", ["", "/v1"])
@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
@pytest.mark.parametrize("layer", ["auth", "rate limit", "metering"])
async def test_exempt_paths_match_exactly(layer: str, shell: str, mount: str) -> None:
    app = build(layer, shell)
    seen = {}
    for path, _ in CASES:
        if shell == "asgi":
            status, headers = await asgi_answer(app, path, mount)
        else:
            status, headers = wsgi_answer(app, path, mount)
        seen[path] = exempted(layer, status, headers)
    assert seen == dict(CASES)
    if layer == "metering":
        close = getattr(app, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
