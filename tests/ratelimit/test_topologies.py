"""``redis+sentinel://`` and ``redis+cluster://`` against real topologies (not mocks).

The topologies (``redis_topologies.py``) are private ``redis-server`` processes on free ports:
a master + replica watched by one Sentinel, and a 3-master Redis Cluster. Everything goes
through the public API: ``RateLimiter(storage=...)`` and ``RateLimitMiddleware(...)``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from agenthood_mw.ratelimit import (
    RateLimiter,
    RateLimitMiddleware,
    RateLimitRule,
    RateLimitStorageError,
)

from .helpers import SetUser, parse_ratelimit
from .redis_topologies import (
    ClusterTopology,
    RedisProcess,
    SentinelTopology,
    cluster_topology,
    free_ports,
    sentinel,
    sentinel_topology,
)
from .test_asgi import client, ok

pytestmark = pytest.mark.redis

__all__ = ["cluster_topology", "sentinel_topology"]  # fixtures, used by name

_prefixes = itertools.count()

# Commands a Sentinel sends to the master it monitors (not ours); INFO is also how we measure.
_SENTINEL_TRAFFIC = {"ping", "info", "publish", "subscribe", "client", "hello"}
# What the GCRA script calls inside Redis (commandstats counts those too); TIME once per run.
_IN_SCRIPT = {"hmget", "lindex", "rpop", "lrange", "lset", "lpush", "hset", "pexpire"}


def prefix() -> str:
    """A key prefix of one's own (the private servers are shared by a module's tests)."""
    return f"t{next(_prefixes)}:"


def command_calls(nodes: list[RedisProcess]) -> Counter[str]:
    """Calls per command, summed over ``nodes`` (``INFO commandstats``)."""
    total: Counter[str] = Counter()
    for node in nodes:
        for name, stats in node.info("commandstats").items():
            total[name.removeprefix("cmdstat_")] += int(stats["calls"])
    return total


def client_commands(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """The commands clients sent between two :func:`command_calls` snapshots."""
    changed = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    scripts = changed.get("evalsha", 0) + changed.get("eval", 0)
    assert changed.pop("time", 0) == scripts  # every TIME came from a script run
    return {k: v for k, v in changed.items() if k not in _SENTINEL_TRAFFIC | _IN_SCRIPT}


def make_app(**options: Any) -> tuple[Any, RateLimitMiddleware]:
    inner = Starlette(routes=[Route("/", ok), Route("/agents/{name}/run", ok, methods=["POST"])])
    options.setdefault("window", "1m")
    options.setdefault("max", 20)
    options.setdefault("burst", 5)
    mw = RateLimitMiddleware(inner, key_prefix=prefix(), **options)
    return SetUser(mw), mw


# --- Sentinel --------------------------------------------------------------------------------


async def test_sentinel_200_concurrent_hits_admit_exactly_25(
    sentinel_topology: SentinelTopology,
) -> None:
    key_prefix = prefix()
    limiter = RateLimiter(
        window="1m", max=20, burst=5, storage=sentinel_topology.url, key_prefix=key_prefix
    )
    try:
        decisions = await asyncio.gather(*(limiter.hit("alice") for _ in range(200)))
        assert sum(d.allowed for d in decisions) == 25
        other = await asyncio.gather(*(limiter.hit("bob") for _ in range(30)))
        assert sum(d.allowed for d in other) == 25  # two keys never share a quota
        assert not limiter.hit_sync("alice").allowed  # the blocking client sees the same state
    finally:
        await limiter.aclose()
        limiter.close()
    with sentinel_topology.master.client() as master:  # the state lives on the master
        assert len(master.keys(key_prefix + "*")) == 4  # state + log for alice and bob


async def test_sentinel_middleware_users_are_independent(
    sentinel_topology: SentinelTopology,
) -> None:
    app, mw = make_app(storage=sentinel_topology.url)
    try:
        async with client(app) as c:
            alice, bob = await asyncio.gather(
                asyncio.gather(*(c.get("/", headers={"x-user": "alice"}) for _ in range(60))),
                asyncio.gather(*(c.get("/", headers={"x-user": "bob"}) for _ in range(40))),
            )
            anonymous = await asyncio.gather(*(c.get("/") for _ in range(30)))
        assert sum(r.status_code == 200 for r in alice) == 25
        assert sum(r.status_code == 200 for r in bob) == 25
        assert sum(r.status_code == 200 for r in anonymous) == 25
        assert mw.storage_failures == 0  # every decision came from Redis through the Sentinel
        refused = next(r for r in alice if r.status_code == 429)
        assert refused.json()["error"]["type"] == "rate_limited"
        assert parse_ratelimit(refused.headers["ratelimit"])["default"]["r"] == 0
    finally:
        await mw.aclose()


async def test_sentinel_one_round_trip_per_request(sentinel_topology: SentinelTopology) -> None:
    limiter = RateLimiter(
        window="1m", max=5, burst=0, storage=sentinel_topology.url, key_prefix=prefix()
    )
    try:
        await limiter.hit("warm-up")  # connect, ask the Sentinel, load the script
        before = command_calls([sentinel_topology.master])
        decisions = [await limiter.hit("k") for _ in range(8)]
        after = command_calls([sentinel_topology.master])
    finally:
        await limiter.aclose()
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert client_commands(before, after) == {"evalsha": 8}  # admitted or refused: one script call


async def test_sentinel_failover_keeps_the_quota() -> None:
    """Kill the master, let the Sentinel promote the replica: counting goes on there."""
    with sentinel() as topology:
        limiter = RateLimiter(window="1h", max=20, burst=5, storage=topology.url)
        try:
            # 10 at once: several pooled connections to the master that is about to die
            first = await asyncio.gather(*(limiter.hit("alice") for _ in range(10)))
            assert sum(d.allowed for d in first) == 10
            old_master = topology.master.port
            topology.failover()
            assert topology.master_port() != old_master
            failures, allowed = 0, 0
            for _ in range(25):
                try:
                    allowed += (await limiter.hit("alice")).allowed
                except RateLimitStorageError:
                    failures += 1  # the first use of a connection to the dead master
            assert failures <= 1  # ... then redis-py drops every idle one and asks the Sentinel
            assert allowed == 15  # the replicated state survived: 25 in total, not 35
            assert limiter.hit_sync("bob").allowed  # a new blocking client finds the new master
        finally:
            await limiter.aclose()
            limiter.close()


# --- Cluster ---------------------------------------------------------------------------------


async def test_cluster_middleware_200_concurrent_requests_admit_exactly_25(
    cluster_topology: ClusterTopology,
) -> None:
    app, mw = make_app(storage=cluster_topology.url)
    try:
        async with client(app) as c:
            responses = await asyncio.gather(
                *(c.get("/", headers={"x-user": "alice"}) for _ in range(200))
            )
            bob = await asyncio.gather(*(c.get("/", headers={"x-user": "bob"}) for _ in range(30)))
        assert mw.storage_failures == 0
        assert sum(r.status_code == 200 for r in responses) == 25
        assert sum(r.status_code == 200 for r in bob) == 25
        first = next(r for r in responses if r.status_code == 200)
        assert parse_ratelimit(first.headers["ratelimit-policy"]) == {"default": {"q": 25, "w": 60}}
    finally:
        await mw.aclose()


def test_cluster_threads_with_the_blocking_client_admit_exactly_25(
    cluster_topology: ClusterTopology,
) -> None:
    limiter = RateLimiter(
        window="1m", max=20, burst=5, storage=cluster_topology.url, key_prefix=prefix()
    )
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            decisions = list(pool.map(lambda _: limiter.hit_sync("alice"), range(200)))
        assert sum(d.allowed for d in decisions) == 25
        assert not asyncio.run(limiter.hit("alice")).allowed  # the asyncio client agrees
    finally:
        limiter.close()


async def test_cluster_many_users_spread_over_every_node(
    cluster_topology: ClusterTopology,
) -> None:
    """Each key's two Redis keys share a slot (else CROSSSLOT), and users use every master."""
    from redis.cluster import key_slot

    key_prefix = prefix()
    odd = ["", "%", "a}b", "{x}", "}{", "a|b", "ü", "x y", "a/b", "u:acme:bob"]
    users = odd + [f"user-{i}" for i in range(90)]
    limiter = RateLimiter(
        window="1m", max=2, burst=0, storage=cluster_topology.url, key_prefix=key_prefix
    )
    try:
        decisions = await asyncio.gather(*(limiter.hit(u) for u in users for _ in range(3)))
        sync_decisions = [limiter.hit_sync(u) for u in odd]
    finally:
        await limiter.aclose()
        limiter.close()
    per_user = [decisions[3 * i : 3 * i + 3] for i in range(len(users))]
    for user, three in zip(users, per_user, strict=True):
        assert sorted(d.allowed for d in three) == [False, True, True], user
    assert not any(d.allowed for d in sync_decisions)  # same keys, same (spent) quotas
    keys_per_node = []
    for node in cluster_topology.nodes:
        with node.client() as c:
            keys_per_node.append([k.decode() for k in c.scan_iter(match=key_prefix + "*")])
    assert all(keys_per_node), [len(k) for k in keys_per_node]  # every master holds some users
    keys = [k for node_keys in keys_per_node for k in node_keys]
    assert len(keys) == 2 * len(users)  # distinct users never share a key ("" included)
    by_base: dict[str, set[int]] = {}
    for k in keys:
        by_base.setdefault(k[:-2], set()).add(key_slot(k.encode()))
    assert all(len(slots) == 1 for slots in by_base.values())
    assert len({s for slots in by_base.values() for s in slots}) > 50  # really spread out


async def test_cluster_rules_are_all_or_nothing_in_one_script(
    cluster_topology: ClusterTopology,
) -> None:
    app, mw = make_app(
        storage=cluster_topology.url,
        max=5,
        burst=0,
        rules=[RateLimitRule(max=2, path="/agents/{name}/run", name="agent-run")],
    )
    try:
        async with client(app) as c:
            for tenant in ("acme", "globex"):
                h = {"x-user": "alice", "x-tenant": tenant}
                codes = [(await c.post("/agents/dev/run", headers=h)).status_code for _ in range(4)]
                assert codes == [200, 200, 429, 429]
                refused = await c.post("/agents/dev/run", headers=h)
                assert parse_ratelimit(refused.headers["ratelimit"])["default"]["r"] == 3
                assert (await c.post("/agents/reviewer/run", headers=h)).status_code == 200
                statuses = [(await c.get("/", headers=h)).status_code for _ in range(3)]
                assert statuses == [200, 200, 429]
        assert mw.storage_failures == 0
    finally:
        await mw.aclose()


async def test_cluster_one_round_trip_per_request(cluster_topology: ClusterTopology) -> None:
    limiter = RateLimiter(
        window="1m", max=3, burst=0, storage=cluster_topology.url, key_prefix=prefix()
    )
    users = [f"rt-{i}" for i in range(30)]
    try:
        for user in users:  # load the script on every node that owns one of these users
            await limiter.hit(user)
        before = command_calls(cluster_topology.nodes)
        decisions = [await limiter.hit(user) for user in users for _ in range(3)]
        after = command_calls(cluster_topology.nodes)
    finally:
        await limiter.aclose()
    assert sum(d.allowed for d in decisions) == 2 * len(users)
    assert client_commands(before, after) == {"evalsha": 3 * len(users)}


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window", "fixed-window"])
def test_window_strategies_are_refused_on_cluster(strategy: str) -> None:
    # limits' asyncio cluster client races under concurrent first use: refused at construction.
    with pytest.raises(ValueError, match="strategy"):
        RateLimiter(window="1m", max=1, strategy=strategy, storage="redis+cluster://127.0.0.1:1")


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window", "fixed-window"])
async def test_window_strategies_on_sentinel(sentinel_topology: Any, strategy: str) -> None:
    url = sentinel_topology.url
    app, mw = make_app(storage=url, strategy=strategy)
    async with client(app) as c:
        statuses = [(await c.get("/", headers={"x-user": "a"})).status_code for _ in range(30)]
        assert (await c.get("/", headers={"x-user": "b"})).status_code == 200
    assert statuses == [200] * 25 + [429] * 5
    assert mw.storage_failures == 0


# --- unreachable topologies: fail fast, map to the documented failure modes ------------------


@pytest.mark.parametrize("scheme", ["redis+sentinel://{}/agenthood", "redis+cluster://{}"])
async def test_unreachable_topology_is_a_storage_failure(scheme: str) -> None:
    (port,) = free_ports(1)
    url = scheme.format(f"127.0.0.1:{port}")
    limiter = RateLimiter(window="1m", max=1, storage=url)
    t0 = time.perf_counter()
    with pytest.raises(RateLimitStorageError):
        await limiter.hit("k")
    with pytest.raises(RateLimitStorageError):
        limiter.hit_sync("k")
    assert time.perf_counter() - t0 < 2  # no retries with backoff
    open_app, open_mw = make_app(storage=url)
    closed_app, _ = make_app(storage=url, fail_open=False)
    async with client(open_app) as c:
        assert (await c.get("/", headers={"x-user": "a"})).status_code == 200
    async with client(closed_app) as c:
        r = await c.get("/", headers={"x-user": "a"})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "rate_limit_unavailable"
    assert open_mw.storage_failures == 1
