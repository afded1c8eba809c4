"""Memory-store bounds, and the middleware behind the real AuthMiddleware."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from agenthood_mw._core.gcra import Policy
from agenthood_mw.ratelimit import RateLimiter, RateLimitMiddleware
from agenthood_mw.ratelimit._memory import MemoryGCRA

from .helpers import Clock
from .test_asgi import ok

SECRET = "test-secret-with-enough-bytes-for-hs256!"


def test_idle_entries_expire() -> None:
    clock = Clock(0.0)
    store = MemoryGCRA(clock=clock)
    policy = Policy.create(window=60, max=20, burst=5)
    for i in range(1000):
        assert store.hit([(policy, f"u{i}|default", 1)])[0].allowed
    assert len(store) == 1000
    clock.advance(policy.ttl + 0.001)  # everyone idle long enough to be a fresh key again
    for i in range(400):  # 16 expired entries go every 4th admission
        store.hit([(policy, f"new{i}|default", 1)])
    assert len(store) == 400  # only the new, live keys remain


def test_expired_state_is_equivalent_to_fresh() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter(window="1m", max=20, burst=5, clock=clock)
    for _ in range(25):
        limiter.hit_sync("a")
    clock.advance(75)  # ttl = 25 emission intervals of 3 s
    assert sum(limiter.hit_sync("a").allowed for _ in range(30)) == 25


def test_max_keys_bounds_memory() -> None:
    store = MemoryGCRA(clock=Clock(0.0), max_keys=100)
    policy = Policy.create(window=60, max=1)
    for i in range(1000):
        store.hit([(policy, f"u{i}|default", 1)])
    assert len(store) == 100


async def test_limiter_cost_and_key_validation() -> None:
    limiter = RateLimiter(window="1m", max=2)
    with pytest.raises(ValueError, match="cost"):
        await limiter.hit("k", cost=-1)
    with pytest.raises(TypeError, match="key"):
        await limiter.hit(3)  # type: ignore[arg-type]
    assert (await limiter.hit("k", cost=0)).allowed
    assert (await limiter.hit("k", cost=2)).remaining == 0


async def test_behind_the_real_auth_middleware() -> None:
    import agenthood_mw.auth as auth

    inner = RateLimitMiddleware(Starlette(routes=[Route("/", ok)]), max=20, burst=5, clock=Clock())
    app: Any = auth.AuthMiddleware(
        inner, strategy="jwt", secret=SECRET, audience="agenthood-api", optional=True
    )
    alice = auth.mint_token(secret=SECRET, user_id="alice")
    bob = auth.mint_token(secret=SECRET, user_id="bob", tenant="acme")
    transport = httpx.ASGITransport(app=app, client=("192.0.2.50", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

        async def burst(token: str | None, n: int) -> int:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            rs = await asyncio.gather(*(c.get("/", headers=headers) for _ in range(n)))
            return sum(r.status_code == 200 for r in rs)

        assert await burst(None, 100) == 25  # anonymous flood, keyed by address
        assert await burst(alice, 40) == 25
        assert await burst(bob, 40) == 25
        bad = await c.get("/", headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401  # auth answers before the limiter counts anything
