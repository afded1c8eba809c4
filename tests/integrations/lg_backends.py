"""Backend factories shared by the LangGraph checkpointer tests (the four real backends)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agenthood_mw.memory import InMemoryBackend, MemoryBackend, SQLiteBackend

BACKENDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]
BACKENDS.append(pytest.param("postgres", marks=pytest.mark.postgres))


@pytest.fixture(params=BACKENDS)
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], MemoryBackend]:
    """A factory of fresh backends of one kind (each Redis/PostgreSQL one in its own space)."""
    kind = request.param
    if kind == "memory":
        return InMemoryBackend
    if kind == "sqlite":
        counter = iter(range(1_000_000))
        return lambda: SQLiteBackend(tmp_path / f"lg-{next(counter)}.db")
    if kind == "redis":
        from agenthood_mw.memory.redis import RedisBackend

        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        counter = iter(range(1_000_000))
        return lambda: RedisBackend(url, key_prefix=f"{prefix}{next(counter)}:")
    from agenthood_mw.memory.postgres import PostgresBackend

    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    return lambda: PostgresBackend(dsn, schema=schema, max_size=4)
