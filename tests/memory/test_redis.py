"""RedisBackend specifics: key layout, hash tags, prefix option, no patterns from user text."""

from __future__ import annotations

import asyncio
import inspect
import re

import pytest

from agenthood_mw.memory import MemoryScope
from agenthood_mw.memory import redis as redis_module

pytestmark = pytest.mark.redis

SCOPES = [MemoryScope.operator(user=u, tenant="t") for u in ("alice", "{x}", "*", "a:b", "%")]


async def test_keys_are_hash_tagged_per_scope(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis
    from redis.crc import key_slot

    backend = redis_module.RedisBackend(redis_url, key_prefix=redis_prefix)
    client = aioredis.Redis.from_url(redis_url)
    try:
        for scope in SCOPES:
            await backend.put(scope, "facts", "f*", 1)
            await backend.put(scope, "project", "p?", 2)
            await backend.append_event(scope, {"e": 1})
        found = {k.decode() async for k in client.scan_iter(match=redis_prefix + "*")}
        expected: set[str] = set()
        for scope in SCOPES:
            keys = backend.scope_keys(scope)
            expected |= set(keys)
            assert {key_slot(k.encode()) for k in keys} == {key_slot(scope.storage_key.encode())}
            for key in keys:
                assert key.startswith(redis_prefix + "{" + scope.storage_key + "}:")
        assert found == expected
        assert await backend.erase(SCOPES[0]) == 3
        remaining = {k.decode() async for k in client.scan_iter(match=redis_prefix + "*")}
        assert remaining == expected - set(backend.scope_keys(SCOPES[0]))
    finally:
        for scope in SCOPES:
            await backend.erase(scope)
        await backend.close()
        await client.aclose()


async def test_borrowed_client_is_not_closed(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    backend = redis_module.RedisBackend(client=client, key_prefix=redis_prefix)
    await backend.put(SCOPES[0], "facts", "k", 1)
    await backend.erase(SCOPES[0])
    await backend.close()
    assert await client.ping()
    await client.aclose()


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="key_prefix"):
        redis_module.RedisBackend("redis://127.0.0.1", key_prefix="app:{x}:")
    with pytest.raises(ValueError, match="key_prefix"):
        redis_module.RedisBackend("redis://127.0.0.1", key_prefix="app*")
    with pytest.raises(ValueError, match="url or client"):
        redis_module.RedisBackend()
    with pytest.raises(TypeError, match="client"):
        redis_module.RedisBackend(client=object())  # type: ignore[arg-type]


def test_no_scan_keys_or_glob_in_the_backend() -> None:
    source = inspect.getsource(redis_module)
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\.(scan|scan_iter|keys|hscan|zscan|sscan)\(", code)
    assert "match=" not in code


def test_pool_options_are_validated(redis_url: str) -> None:
    import redis.asyncio as aioredis

    for bad in (0, -1, True, 1.5, "16"):
        with pytest.raises(ValueError, match="max_connections"):
            redis_module.RedisBackend(redis_url, max_connections=bad)  # type: ignore[arg-type]
    for bad_timeout in (0, -1, True, float("nan"), float("inf"), 10**400, 301, "5"):
        with pytest.raises(ValueError, match="pool_timeout"):
            redis_module.RedisBackend(redis_url, pool_timeout=bad_timeout)  # type: ignore[arg-type]
    client = aioredis.Redis.from_url(redis_url)
    with pytest.raises(ValueError, match="max_connections and pool_timeout"):
        redis_module.RedisBackend(client=client, max_connections=4)
    with pytest.raises(ValueError, match="max_connections and pool_timeout"):
        redis_module.RedisBackend(client=client, pool_timeout=1)


async def test_the_pool_is_blocking_and_bounded(redis_url: str, redis_prefix: str) -> None:
    """More concurrent operations than connections wait for one; none fails, and the server
    never sees more than ``max_connections`` connections of this backend."""
    import redis.asyncio as aioredis

    name = f"agenthood-pool-{redis_prefix.replace(':', '-')}"
    sep = "&" if "?" in redis_url else "?"
    backend = redis_module.RedisBackend(
        f"{redis_url}{sep}client_name={name}",
        key_prefix=redis_prefix,
        max_connections=3,
        pool_timeout=10,
    )
    observer = aioredis.Redis.from_url(redis_url)
    peak = 0
    scope = SCOPES[0]

    async def watch() -> None:
        nonlocal peak
        while True:
            clients = await observer.client_list()
            peak = max(peak, sum(1 for c in clients if c.get("name") == name))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        records = await asyncio.gather(
            *(backend.put(scope, "facts", f"k{i}", i) for i in range(300))
        )
        assert [r.value for r in records] == list(range(300))
        assert 1 <= peak <= 3
    finally:
        watcher.cancel()
        await backend.erase(scope)
        await backend.close()
        await observer.aclose()
    assert not any(c.get("name") == name for c in await _clients(redis_url))


async def _clients(redis_url: str) -> list[dict[str, str]]:
    import redis.asyncio as aioredis

    observer = aioredis.Redis.from_url(redis_url)
    try:
        await asyncio.sleep(0.05)
        return list(await observer.client_list())
    finally:
        await observer.aclose()
