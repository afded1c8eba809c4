"""The conformance kit run against the four real backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agenthood_mw.memory import InMemoryBackend, MemoryBackend, SQLiteBackend
from agenthood_mw.testing._conformance import BackendConformance

Factory = Callable[[Callable[[], float]], MemoryBackend]


class TestInMemoryBackend(BackendConformance):
    @pytest.fixture
    def make_backend(self) -> Factory:
        return lambda clock: InMemoryBackend(clock=clock)


class TestSQLiteBackend(BackendConformance):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Factory:
        return lambda clock: SQLiteBackend(tmp_path / "memory.db", clock=clock)


@pytest.mark.redis
class TestRedisBackend(BackendConformance):
    @pytest.fixture
    def make_backend(self, redis_url: str, redis_prefix: str) -> Factory:
        from agenthood_mw.memory.redis import RedisBackend

        return lambda clock: RedisBackend(redis_url, key_prefix=redis_prefix, clock=clock)


@pytest.mark.postgres
class TestPostgresBackend(BackendConformance):
    @pytest.fixture
    def make_backend(self, postgres_dsn: str, postgres_schema: str) -> Factory:
        from agenthood_mw.memory.postgres import PostgresBackend

        return lambda clock: PostgresBackend(
            postgres_dsn, schema=postgres_schema, max_size=4, clock=clock
        )
