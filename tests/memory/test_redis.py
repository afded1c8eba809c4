"""RedisBackend specifics: key layout, hash tags, prefix option, no patterns from user text."""

from __future__ import annotations

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
