"""The ASGI middleware end to end (memory storage, real HTTP client in-process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from agenthood_mw.ratelimit import RateLimitMiddleware, RateLimitRule

from .helpers import Clock, SetUser, parse_ratelimit


async def ok(request: Request) -> JSONResponse:
    decision = request.scope.get("state", {}).get("agenthood", {}).get("rate_limit")
    return JSONResponse({"remaining": None if decision is None else decision.remaining})


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def make_app(**options: Any) -> Any:
    inner = Starlette(
        routes=[
            Route("/", ok),
            Route("/health", ok),
            Route("/agents/{name}/run", ok, methods=["POST"]),
            WebSocketRoute("/ws", ws_endpoint),
        ]
    )
    options.setdefault("window", "1m")
    options.setdefault("max", 20)
    options.setdefault("burst", 5)
    limiter = RateLimitMiddleware(inner, **options)
    return SetUser(limiter), limiter


def client(app: Any, address: str = "192.0.2.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_thirty_at_once_admits_25_with_headers_and_json_429() -> None:
    app, _ = make_app(clock=Clock())
    async with client(app) as c:
        responses = [await c.get("/", headers={"x-user": "alice"}) for _ in range(30)]
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 25 + [429] * 5
    first = responses[0]
    assert parse_ratelimit(first.headers["ratelimit-policy"]) == {"default": {"q": 25, "w": 60}}
    assert parse_ratelimit(first.headers["ratelimit"]) == {"default": {"r": 24, "t": 60}}
    assert first.json() == {"remaining": 24}
    refused = responses[-1]
    body = refused.json()
    assert body["error"]["type"] == "rate_limited"
    assert body["error"]["retry_after"] == 60
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["content-type"] == "application/json"
    assert parse_ratelimit(refused.headers["ratelimit"])["default"]["r"] == 0
    assert "x-ratelimit-limit" not in refused.headers


async def test_500_concurrent_requests_admit_exactly_25() -> None:
    app, _ = make_app()
    async with client(app) as c:
        responses = await asyncio.gather(
            *(c.get("/", headers={"x-user": "alice"}) for _ in range(500))
        )
    assert sum(r.status_code == 200 for r in responses) == 25
    assert sum(r.status_code == 429 for r in responses) == 475


async def test_retry_after_is_honoured() -> None:
    clock = Clock()
    app, _ = make_app(clock=clock)
    async with client(app) as c:
        for _ in range(25):
            assert (await c.get("/", headers={"x-user": "a"})).status_code == 200
        clock.advance(12.5)
        refused = await c.get("/", headers={"x-user": "a"})
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert wait == 48  # 47.5 s rounded up
        clock.advance(wait - 1)
        assert (await c.get("/", headers={"x-user": "a"})).status_code == 429
        clock.advance(1)
        assert (await c.get("/", headers={"x-user": "a"})).status_code == 200


async def test_the_table_through_the_middleware() -> None:
    clock = Clock(0.0)
    app, limiter = make_app(clock=clock)
    per_minute = [0] * 10
    async with client(app) as c:
        for _ in range(2000):
            if clock.now >= 600:
                break
            r = await c.get("/", headers={"x-user": "a"})
            if r.status_code == 200:
                per_minute[int(clock.now // 60)] += 1
            else:
                clock.advance(int(r.headers["retry-after"]))
    # Whole-second Retry-After still reaches the exact table.
    assert per_minute == [25, 25, 25, 25, 24, 20, 20, 20, 20, 20]
    assert limiter.storage_failures == 0


async def test_users_do_not_share_quota_and_tenants_are_separate() -> None:
    app, _ = make_app(clock=Clock())
    async with client(app) as c:
        alice = [await c.get("/", headers={"x-user": "alice"}) for _ in range(30)]
        bob = [await c.get("/", headers={"x-user": "bob"}) for _ in range(30)]
        acme_alice = [
            await c.get("/", headers={"x-user": "alice", "x-tenant": "acme"}) for _ in range(30)
        ]
    for responses in (alice, bob, acme_alice):
        assert sum(r.status_code == 200 for r in responses) == 25


async def test_anonymous_flood_does_not_touch_authenticated_users() -> None:
    app, _ = make_app(clock=Clock())
    async with client(app, "198.51.100.7") as c:
        flood = await asyncio.gather(*(c.get("/") for _ in range(200)))
        assert sum(r.status_code == 200 for r in flood) == 25
        users = await asyncio.gather(
            *(c.get("/", headers={"x-user": f"user{i % 4}"}) for i in range(40))
        )
    assert all(r.status_code == 200 for r in users)
    async with client(app, "198.51.100.8") as other:
        assert (await other.get("/")).status_code == 200


async def test_forwarded_for_only_from_trusted_proxies() -> None:
    app, _ = make_app(clock=Clock(), max=1, burst=0, trusted_proxies=["10.0.0.0/8"])
    async with client(app, "10.1.1.1") as proxy:
        assert (await proxy.get("/", headers={"x-forwarded-for": "1.1.1.1"})).status_code == 200
        assert (await proxy.get("/", headers={"x-forwarded-for": "2.2.2.2"})).status_code == 200
        assert (await proxy.get("/", headers={"x-forwarded-for": "1.1.1.1"})).status_code == 429
    async with client(app, "203.0.113.5") as direct:
        # Spoofed header from an untrusted peer is ignored: keyed by the peer itself.
        assert (await direct.get("/", headers={"x-forwarded-for": "3.3.3.3"})).status_code == 200
        assert (await direct.get("/", headers={"x-forwarded-for": "4.4.4.4"})).status_code == 429


async def test_per_agent_rule_with_global_rule_and_nothing_charged_when_refused() -> None:
    app, _ = make_app(
        clock=Clock(),
        max=5,
        burst=0,
        rules=[RateLimitRule(window="1m", max=2, path="/agents/{name}/run", name="agent-run")],
    )
    async with client(app) as c:
        h = {"x-user": "alice"}
        dev = [(await c.post("/agents/dev/run", headers=h)).status_code for _ in range(3)]
        assert dev == [200, 200, 429]
        refused = await c.post("/agents/dev/run", headers=h)
        assert refused.json()["error"]["policy"] == "agent-run"
        fields = parse_ratelimit(refused.headers["ratelimit"])
        assert set(fields) == {"default", "agent-run"}
        # The refused calls did not use the global quota: 3 left of 5.
        assert fields["default"]["r"] == 3
        rev = [(await c.post("/agents/reviewer/run", headers=h)).status_code for _ in range(2)]
        assert rev == [200, 200]
        assert (await c.get("/", headers=h)).status_code == 200
        assert (await c.get("/", headers=h)).status_code == 429
        assert refused.headers["ratelimit-policy"].count(";q=") == 2


async def test_cost_hook_and_key_override() -> None:
    def cost(scope: Any) -> int:
        return 10 if scope["path"].startswith("/agents/") else 1

    def key(scope: Any) -> str | None:
        headers = dict(scope["headers"])
        return headers.get(b"x-team", b"").decode() or None

    app, _ = make_app(clock=Clock(), cost=cost, key=key)
    async with client(app) as c:
        team = {"x-team": "red"}
        assert (await c.post("/agents/x/run", headers=team)).status_code == 200
        assert (await c.post("/agents/x/run", headers=team)).status_code == 200
        assert (await c.post("/agents/x/run", headers=team)).status_code == 429
        assert [(await c.get("/", headers=team)).status_code for _ in range(6)] == [200] * 5 + [429]
        # key() returned None: not limited at all.
        assert [(await c.get("/")).status_code for _ in range(40)] == [200] * 40


async def test_cost_above_capacity_is_refused_without_retry_after() -> None:
    """Never admittable: a 403 with its own type, told apart from a temporary 429 (issue 11
    #22; it was a 429 ``rate_limited`` with t=0 and no Retry-After)."""
    app, _ = make_app(clock=Clock(), cost=lambda scope: 26)
    async with client(app) as c:
        r = await c.get("/", headers={"x-user": "a"})
    assert r.status_code == 403
    assert "retry-after" not in r.headers
    assert r.json()["error"]["type"] == "rate_limit_cost_too_high"


async def test_exempt_paths_and_legacy_headers() -> None:
    app, _ = make_app(clock=Clock(), max=1, burst=0, exempt_paths=["/health"], legacy_headers=True)
    async with client(app) as c:
        health = [await c.get("/health", headers={"x-user": "a"}) for _ in range(5)]
        assert all(r.status_code == 200 and "ratelimit" not in r.headers for r in health)
        assert health[0].json() == {"remaining": None}
        r = await c.get("/", headers={"x-user": "a"})
        assert r.headers["x-ratelimit-limit"] == "1"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert r.headers["x-ratelimit-reset"] == "60"


async def test_lifespan_and_unknown_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = RateLimitMiddleware(inner, max=1)
    for kind in ("lifespan", "something-else"):
        await mw({"type": kind}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "something-else"]


def test_websocket_limited_at_connect() -> None:
    app, _ = make_app(clock=Clock(), max=2, burst=0)
    with TestClient(app) as tc:
        for _ in range(2):
            with tc.websocket_connect("/ws", headers={"x-user": "a"}) as ws:
                assert ws.receive_text() == "hello"
        with pytest.raises(WebSocketDenialResponse) as info:  # noqa: SIM117
            with tc.websocket_connect("/ws", headers={"x-user": "a"}):
                pass
        assert info.value.status_code == 429
        assert info.value.json()["error"]["type"] == "rate_limited"
        assert info.value.headers["retry-after"] == "60"  # burst=0: 2 per rolling minute
        with tc.websocket_connect("/ws", headers={"x-user": "b"}) as ws:
            assert ws.receive_text() == "hello"


def test_starlette_add_middleware_convention() -> None:
    def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", index)])
    app.add_middleware(RateLimitMiddleware, window="1m", max=2, burst=0)
    with TestClient(app) as tc:
        assert [tc.get("/").status_code for _ in range(3)] == [200, 200, 429]
        body = json.loads(tc.get("/").content)
        assert body["error"]["type"] == "rate_limited"


@pytest.mark.parametrize(("prefix", "root_path"), [("/v1", ""), ("/api", "/api")])
async def test_rules_and_exempt_paths_are_relative_to_the_mount(
    prefix: str, root_path: str
) -> None:
    """Under ``Mount`` or a server ``root_path`` the path options still match (and never fail
    open): they are compared with the path relative to the app."""
    rule = RateLimitRule(window="1m", max=2, path="/agents/{name}/run", name="agent-run")
    app, _ = make_app(clock=Clock(), max=100, rules=[rule], exempt_paths=["/health"])
    if not root_path:
        app = Starlette(routes=[Mount(prefix, app=app)])
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1234), root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        runs = [(await c.post(f"{prefix}/agents/a/run")).status_code for _ in range(3)]
        assert runs == [200, 200, 429]
        assert (await c.post(f"{prefix}/agents/b/run")).status_code == 200
        health = await c.get(f"{prefix}/health")
        assert health.status_code == 200 and "ratelimit" not in health.headers
