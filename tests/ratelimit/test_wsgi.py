"""The WSGI shell through Flask's test client: the same answers as the ASGI shell."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify

from agenthood_mw import Identity
from agenthood_mw.ratelimit import RateLimitRule, WSGIRateLimitMiddleware

from .helpers import Clock, parse_ratelimit


def make_app(**options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        from flask import request

        decision = request.environ.get("agenthood.state", {}).get("rate_limit")
        return jsonify(remaining=None if decision is None else decision.remaining)

    @app.post("/agents/<name>/run")
    def run(name: str) -> Any:
        return jsonify(agent=name)

    options.setdefault("window", "1m")
    options.setdefault("max", 20)
    options.setdefault("burst", 5)
    limited = WSGIRateLimitMiddleware(app.wsgi_app, **options)

    def set_user(environ: dict[str, Any], start_response: Any) -> Any:
        user = environ.get("HTTP_X_USER")
        if user:
            environ["agenthood.identity"] = Identity(user_id=user)
        return limited(environ, start_response)

    app.wsgi_app = set_user  # type: ignore[method-assign]
    return app


def test_thirty_at_once_admits_25_same_headers_and_body() -> None:
    client = make_app(clock=Clock()).test_client()
    responses = [client.get("/", headers={"X-User": "alice"}) for _ in range(30)]
    assert [r.status_code for r in responses] == [200] * 25 + [429] * 5
    first = responses[0]
    assert first.get_json() == {"remaining": 24}
    assert parse_ratelimit(first.headers["RateLimit"]) == {"default": {"r": 24, "t": 60}}
    assert parse_ratelimit(first.headers["RateLimit-Policy"]) == {"default": {"q": 25, "w": 60}}
    refused = responses[-1]
    assert refused.get_json()["error"]["type"] == "rate_limited"
    assert refused.headers["Retry-After"] == "60"


def test_users_independent_and_anonymous_by_address() -> None:
    client = make_app(clock=Clock()).test_client()
    anon = [client.get("/", environ_base={"REMOTE_ADDR": "198.51.100.1"}) for _ in range(30)]
    assert sum(r.status_code == 200 for r in anon) == 25
    for user in ("alice", "bob"):
        got = [client.get("/", headers={"X-User": user}) for _ in range(30)]
        assert sum(r.status_code == 200 for r in got) == 25


def test_retry_after_honoured_and_the_table() -> None:
    clock = Clock(0.0)
    client = make_app(clock=clock).test_client()
    per_minute = [0] * 10
    for _ in range(2000):
        if clock.now >= 600:
            break
        r = client.get("/", headers={"X-User": "a"})
        if r.status_code == 200:
            per_minute[int(clock.now // 60)] += 1
        else:
            clock.advance(int(r.headers["Retry-After"]))
    assert per_minute == [25, 25, 25, 25, 24, 20, 20, 20, 20, 20]


def test_rules_xff_and_exempt() -> None:
    client = make_app(
        clock=Clock(),
        max=3,
        burst=0,
        rules=[RateLimitRule(max=1, path="/agents/{name}/run", name="agent-run")],
        trusted_proxies=["10.0.0.1"],
        exempt_paths=["/static/*"],
    ).test_client()
    via_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    assert (
        client.post(
            "/agents/dev/run", environ_base=via_proxy, headers={"X-Forwarded-For": "1.1.1.1"}
        ).status_code
        == 200
    )
    refused = client.post(
        "/agents/dev/run", environ_base=via_proxy, headers={"X-Forwarded-For": "1.1.1.1"}
    )
    assert refused.status_code == 429
    assert refused.get_json()["error"]["policy"] == "agent-run"
    assert (
        client.post(
            "/agents/dev/run", environ_base=via_proxy, headers={"X-Forwarded-For": "2.2.2.2"}
        ).status_code
        == 200
    )
    assert all(client.get("/static/x.css").status_code == 404 for _ in range(10))


def test_rules_and_exempt_paths_are_relative_to_script_name() -> None:
    """Mounted with werkzeug's dispatcher (``SCRIPT_NAME=/v1``): the same answers as the ASGI
    shell under ``Mount("/v1")`` -- options match ``PATH_INFO``, non-ASCII decoded as UTF-8."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client

    rule = RateLimitRule(window="1m", max=2, path="/agents/{name}/run", name="agent-run")
    app = make_app(clock=Clock(), max=100, rules=[rule], exempt_paths=["/café/*"])
    client = Client(DispatcherMiddleware(Flask("root"), {"/v1": app.wsgi_app}))
    runs = [client.post("/v1/agents/a/run").status_code for _ in range(3)]
    assert runs == [200, 200, 429]
    assert client.post("/v1/agents/b/run").status_code == 200
    assert "ratelimit" not in client.get("/v1/café/x").headers  # exempt (404 from Flask)
    assert "ratelimit" in client.get("/v1/other").headers


@pytest.mark.redis
def test_redis_and_fail_closed(redis_url: str, redis_prefix: str) -> None:
    client = make_app(storage=redis_url, key_prefix=redis_prefix).test_client()
    got = [client.get("/", headers={"X-User": "a"}) for _ in range(30)]
    assert [r.status_code for r in got] == [200] * 25 + [429] * 5
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = make_app(storage=f"redis://127.0.0.1:{port}", fail_open=False).test_client()
    r = closed.get("/", headers={"X-User": "a"})
    assert r.status_code == 503
    assert r.get_json()["error"]["type"] == "rate_limit_unavailable"
    opened = make_app(storage=f"redis://127.0.0.1:{port}").test_client()
    assert opened.get("/", headers={"X-User": "a"}).status_code == 200


def test_behind_the_real_wsgi_auth_middleware() -> None:
    from agenthood_mw.auth import mint_token
    from agenthood_mw.auth._wsgi import AuthMiddleware as WSGIAuth

    secret = "test-secret-with-enough-bytes-for-hs256!"
    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return jsonify(ok=True)

    limited = WSGIRateLimitMiddleware(app.wsgi_app, max=2, burst=1, clock=Clock())
    app.wsgi_app = WSGIAuth(  # type: ignore[method-assign]
        limited, strategy="jwt", secret=secret, audience="agenthood-api"
    )
    client = app.test_client()
    for user in ("alice", "bob"):
        headers = {"Authorization": f"Bearer {mint_token(secret=secret, user_id=user)}"}
        assert [client.get("/", headers=headers).status_code for _ in range(4)] == [
            200,
            200,
            200,
            429,
        ]
    assert client.get("/").status_code == 401
