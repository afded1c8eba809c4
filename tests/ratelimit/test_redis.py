"""Redis storage: exactness under concurrency (tasks and processes), failure and recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from agenthood_mw.ratelimit import RateLimiter, RateLimitMiddleware, RateLimitStorageError

from .helpers import SetUser, parse_ratelimit
from .test_asgi import client, ok

pytestmark = pytest.mark.redis


def make_app(**options: Any) -> tuple[Any, RateLimitMiddleware]:
    from starlette.applications import Starlette
    from starlette.routing import Route

    options.setdefault("window", "1m")
    options.setdefault("max", 20)
    options.setdefault("burst", 5)
    limiter = RateLimitMiddleware(Starlette(routes=[Route("/", ok)]), **options)
    return SetUser(limiter), limiter


async def test_500_concurrent_requests_admit_exactly_25(redis_url: str, redis_prefix: str) -> None:
    app, mw = make_app(storage=redis_url, key_prefix=redis_prefix)
    async with client(app) as c:
        responses = await asyncio.gather(
            *(c.get("/", headers={"x-user": "alice"}) for _ in range(500))
        )
        assert mw.storage_failures == 0  # every request was decided by Redis
        assert sum(r.status_code == 200 for r in responses) == 25
        first = next(r for r in responses if r.status_code == 200)
        assert parse_ratelimit(first.headers["ratelimit-policy"]) == {"default": {"q": 25, "w": 60}}
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error"]["type"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another user is untouched.
        bob = await asyncio.gather(*(c.get("/", headers={"x-user": "bob"}) for _ in range(30)))
        assert sum(r.status_code == 200 for r in bob) == 25
    keys = redis.Redis.from_url(redis_url, decode_responses=True).keys(redis_prefix + "*")
    assert keys and all(str(k).startswith(redis_prefix) for k in keys)


async def test_limiter_concurrent_tasks_exact(redis_url: str, redis_prefix: str) -> None:
    limiter = RateLimiter(window="1m", max=20, burst=5, storage=redis_url, key_prefix=redis_prefix)
    decisions = await asyncio.gather(*(limiter.hit("k") for _ in range(500)))
    assert sum(d.allowed for d in decisions) == 25
    assert all(d.limit == 25 for d in decisions)
    await limiter.aclose()


def test_three_processes_sharing_redis_admit_exactly_25(redis_url: str, redis_prefix: str) -> None:
    worker = Path(__file__).with_name("_worker.py")
    start_at = time.time() + 4.0
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), redis_url, redis_prefix, str(start_at), "170"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        counts.append(int(out.strip()))
    assert sum(counts) == 25, counts


def test_sync_and_async_share_one_quota(redis_url: str, redis_prefix: str) -> None:
    limiter = RateLimiter(window="1m", max=3, burst=0, storage=redis_url, key_prefix=redis_prefix)
    assert [limiter.hit_sync("k").allowed for _ in range(2)] == [True, True]
    assert asyncio.run(limiter.hit("k")).allowed
    assert not limiter.hit_sync("k").allowed
    limiter.close()


async def test_retry_after_is_honoured(redis_url: str, redis_prefix: str) -> None:
    app, _ = make_app(storage=redis_url, key_prefix=redis_prefix, window="1s", max=2, burst=0)
    async with client(app) as c:
        assert [(await c.get("/", headers={"x-user": "a"})).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        refused = await c.get("/", headers={"x-user": "a"})
        wait = int(refused.headers["retry-after"])
        assert wait == 1
        await asyncio.sleep(wait)
        assert (await c.get("/", headers={"x-user": "a"})).status_code == 200


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window", "fixed-window"])
async def test_window_strategies(redis_url: str, redis_prefix: str, strategy: str) -> None:
    app, _ = make_app(storage=redis_url, key_prefix=redis_prefix, strategy=strategy)
    async with client(app) as c:
        statuses = [(await c.get("/", headers={"x-user": "a"})).status_code for _ in range(30)]
        assert statuses == [200] * 25 + [429] * 5
        refused = await c.get("/", headers={"x-user": "a"})
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await c.get("/", headers={"x-user": "b"})).status_code == 200


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window", "fixed-window"])
async def test_window_strategies_in_memory(strategy: str) -> None:
    app, _ = make_app(strategy=strategy)
    async with client(app) as c:
        statuses = [(await c.get("/", headers={"x-user": "a"})).status_code for _ in range(30)]
    assert statuses == [200] * 25 + [429] * 5


# --- failure and recovery ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server on a free port that the test can stop and start."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(redis_url: str) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("AGENTHOOD_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server binary not available and AGENTHOOD_REQUIRE_SERVICES=1")
        pytest.skip("redis-server binary not available")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_fail_open_then_recovery(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    app, mw = make_app(storage=url, max=2, burst=0)
    async with client(app) as c:
        h = {"x-user": "a"}
        assert [(await c.get("/", headers=h)).status_code for _ in range(3)] == [200, 200, 429]
        private_redis.stop()
        with caplog.at_level(logging.WARNING, logger="agenthood_mw.ratelimit"):
            down = [await c.get("/", headers=h) for _ in range(5)]
        assert [r.status_code for r in down] == [200] * 5  # admitted: fail_open=True
        assert all("ratelimit" not in r.headers for r in down)
        assert mw.storage_failures == 5
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once per interval, not once per request
        private_redis.start()  # empty server: the quota starts afresh, no restart needed
        assert [(await c.get("/", headers=h)).status_code for _ in range(3)] == [200, 200, 429]
        assert mw.storage_failures == 5


async def test_fail_closed_then_recovery(private_redis: RedisServer) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    app, mw = make_app(storage=url, max=2, burst=0, fail_open=False)
    async with client(app) as c:
        h = {"x-user": "a"}
        assert (await c.get("/", headers=h)).status_code == 200
        private_redis.stop()
        t0 = time.perf_counter()
        r = await c.get("/", headers=h)
        assert time.perf_counter() - t0 < 2
        assert r.status_code == 503
        assert r.json()["error"]["type"] == "rate_limit_unavailable"
        assert "Traceback" not in r.text
        assert mw.storage_failures == 1
        private_redis.start()
        assert (await c.get("/", headers=h)).status_code == 200


async def test_closed_port_from_the_start() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    open_app, _ = make_app(storage=url)
    closed_app, _ = make_app(storage=url, fail_open=False)
    async with client(open_app) as c:
        assert (await c.get("/", headers={"x-user": "a"})).status_code == 200
    async with client(closed_app) as c:
        assert (await c.get("/", headers={"x-user": "a"})).status_code == 503
    limiter = RateLimiter(window="1m", max=1, storage=url)
    with pytest.raises(RateLimitStorageError):
        await limiter.hit("k")
    with pytest.raises(RateLimitStorageError):
        limiter.hit_sync("k")


async def test_weighted_costs_and_remaining(redis_url: str, redis_prefix: str) -> None:
    limiter = RateLimiter(window="1m", max=20, burst=5, storage=redis_url, key_prefix=redis_prefix)
    first = await limiter.hit("k", cost=10)
    assert (first.allowed, first.remaining) == (True, 15)
    assert (await limiter.hit("k", cost=10)).remaining == 5
    refused = await limiter.hit("k", cost=6)
    assert not refused.allowed
    assert refused.remaining == 5
    assert 59 <= refused.retry_after <= 60
    assert (await limiter.hit("k", cost=5)).allowed
    never = await limiter.hit("other", cost=26)
    assert not never.allowed and never.retry_after == float("inf")
    await limiter.aclose()


async def test_rules_are_all_or_nothing_in_one_script(redis_url: str, redis_prefix: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from agenthood_mw.ratelimit import RateLimitRule

    inner = Starlette(routes=[Route("/", ok), Route("/agents/{name}/run", ok, methods=["POST"])])
    mw = RateLimitMiddleware(
        inner,
        window="1m",
        max=5,
        storage=redis_url,
        key_prefix=redis_prefix,
        rules=[RateLimitRule(max=2, path="/agents/{name}/run", name="agent-run")],
    )
    async with client(SetUser(mw)) as c:
        h = {"x-user": "alice"}
        codes = [(await c.post("/agents/dev/run", headers=h)).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        refused = await c.post("/agents/dev/run", headers=h)
        fields = parse_ratelimit(refused.headers["ratelimit"])
        assert fields["default"]["r"] == 3  # refused calls charged nothing globally
        assert refused.json()["error"]["policy"] == "agent-run"
        assert [(await c.get("/", headers=h)).status_code for _ in range(4)] == [200] * 3 + [429]
    await mw.aclose()


def test_redis_script_matches_the_core(redis_url: str, redis_prefix: str) -> None:
    """The Lua script and the Python core decide alike (long window: no refill mid-test)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from .helpers import Clock

    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None)
    @given(
        costs=st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=30),
        max_=st.integers(min_value=1, max_value=12),
        burst=st.integers(min_value=0, max_value=6),
    )
    def check(costs: list[int], max_: int, burst: int) -> None:
        prefix = f"{redis_prefix}{next(counter)}:"
        on_redis = RateLimiter(
            window="1h", max=max_, burst=burst, storage=redis_url, key_prefix=prefix
        )
        in_memory = RateLimiter(window="1h", max=max_, burst=burst, clock=Clock())
        try:
            for cost in costs:
                a, b = on_redis.hit_sync("k", cost=cost), in_memory.hit_sync("k", cost=cost)
                assert (a.allowed, a.limit, a.remaining, a.policy) == (
                    b.allowed,
                    b.limit,
                    b.remaining,
                    b.policy,
                )
                assert a.reset_after == pytest.approx(b.reset_after, abs=1.0)
                if not a.allowed:
                    assert a.retry_after == pytest.approx(b.retry_after, abs=1.0)
        finally:
            on_redis.close()

    check()
