"""A client can tell every refusal apart (issue 11 #22): a 503 always carries ``Retry-After``,
and a request that can never be admitted is not a (temporary) 429."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from flask import Flask

from agenthood_mw._core.ratelimit import (
    NEVER_ADMITTED_STATUS,
    NEVER_ADMITTED_TYPE,
    UNAVAILABLE_RETRY_AFTER,
)
from agenthood_mw.ratelimit import (
    RateLimitMiddleware,
    RateLimitRule,
    WSGIRateLimitMiddleware,
)

from .helpers import Clock, SetUser


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def flask_app(**options: Any) -> Any:
    flask = Flask(__name__)
    flask.add_url_rule("/", "index", lambda: "ok")
    flask.add_url_rule("/agents/<name>/run", "run", lambda name: "ok", methods=["POST"])
    flask.wsgi_app = WSGIRateLimitMiddleware(flask.wsgi_app, **options)  # type: ignore[method-assign]
    return flask.test_client()


async def asgi_get(app: Any, path: str = "/", method: str = "GET") -> httpx.Response:
    transport = httpx.ASGITransport(app=SetUser(app), client=("192.0.2.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        return await c.request(method, path, headers={"x-user": "alice"})


async def test_storage_down_503_carries_retry_after_asgi() -> None:
    mw = RateLimitMiddleware(
        ok, max=5, storage=f"redis://127.0.0.1:{closed_port()}", fail_open=False
    )
    r = await asgi_get(mw)
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "rate_limit_unavailable"
    assert r.headers["retry-after"] == str(UNAVAILABLE_RETRY_AFTER)
    await mw.aclose()


def test_storage_down_503_carries_retry_after_wsgi() -> None:
    c = flask_app(max=5, storage=f"redis://127.0.0.1:{closed_port()}", fail_open=False)
    r = c.get("/")
    assert r.status_code == 503
    assert r.get_json()["error"]["type"] == "rate_limit_unavailable"
    assert r.headers["retry-after"] == str(UNAVAILABLE_RETRY_AFTER)


RULES = [RateLimitRule(window="1m", max=2, path="/agents/{name}/run", methods=["POST"])]


@pytest.mark.parametrize(
    ("options", "path", "method"),
    [
        ({"max": 20, "burst": 5, "cost": lambda request: 26}, "/", "GET"),
        # Only the agent rule (2 per minute) can never hold 3 units; the default admits them.
        ({"max": 20, "rules": RULES, "cost": lambda request: 3}, "/agents/x/run", "POST"),
    ],
)
async def test_a_request_that_can_never_be_admitted(
    options: dict[str, Any], path: str, method: str
) -> None:
    asgi = await asgi_get(RateLimitMiddleware(ok, clock=Clock(), **options), path, method)
    wsgi = flask_app(clock=Clock(), **options).open(path, method=method)
    for status, headers, body in (
        (asgi.status_code, asgi.headers, asgi.json()),
        (wsgi.status_code, wsgi.headers, wsgi.get_json()),
    ):
        assert status == NEVER_ADMITTED_STATUS == 403
        assert body["error"]["type"] == NEVER_ADMITTED_TYPE
        assert "retry-after" not in headers
        assert "ratelimit" in headers  # the policies still describe the quota
