"""Backends for the framework-integration tests: every test runs on all four backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agenthood_mw.memory import InMemoryBackend, MemoryBackend, SQLiteBackend
from agenthood_mw.testing import FakeClock

BACKENDS = (
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[FakeClock], MemoryBackend]:
    """A factory of one fresh backend of the parametrised kind (built with the given clock)."""
    kind = request.param
    if kind == "memory":
        return lambda clk: InMemoryBackend(clock=clk, max_records=50_000)
    if kind == "sqlite":
        return lambda clk: SQLiteBackend(tmp_path / "memory.db", clock=clk)
    if kind == "redis":
        from agenthood_mw.memory.redis import RedisBackend

        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        return lambda clk: RedisBackend(url, key_prefix=prefix, clock=clk)
    from agenthood_mw.memory.postgres import PostgresBackend

    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    return lambda clk: PostgresBackend(dsn, schema=schema, max_size=4, clock=clk)


@pytest.fixture
async def backend(
    make_backend: Callable[[FakeClock], MemoryBackend], clock: FakeClock
) -> AsyncIterator[MemoryBackend]:
    b = make_backend(clock)
    try:
        yield b
    finally:
        await b.close()
