"""Shared fixtures: the real Redis and PostgreSQL services, isolated per test run.

Tests read ``AGENTHOOD_TEST_REDIS_URL`` and ``AGENTHOOD_TEST_POSTGRES_DSN`` and skip with a clear
reason when the service is unreachable -- except under ``AGENTHOOD_REQUIRE_SERVICES=1`` (set by
``.ci/run``), where unreachable means fail. Redis keys live under a per-run prefix that is deleted
afterwards; PostgreSQL work happens in throwaway schemas that are dropped. Nothing else is
touched.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid
from collections.abc import Iterator

import pytest

# Test helpers shared across folders (``served.py``) are imported by module name.
sys.path.insert(0, os.path.dirname(__file__))

REQUIRE_SERVICES = os.environ.get("AGENTHOOD_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("AGENTHOOD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "AGENTHOOD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
RUN_ID = uuid.uuid4().hex[:10]
_counter = itertools.count()


def _unavailable(service: str, why: str) -> None:
    message = f"{service} is not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and AGENTHOOD_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the test Redis server (skips, or fails under AGENTHOOD_REQUIRE_SERVICES=1)."""
    try:
        import redis
    except ImportError:
        _unavailable("Redis", "redis-py is not installed; install agenthood-mw[redis]")
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        _unavailable("Redis", f"{REDIS_URL}: {type(exc).__name__}")
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_run_prefix(redis_url: str) -> Iterator[str]:
    """Key prefix of this test run; every key under it is deleted at the end of the session."""
    import redis

    prefix = f"agenthood-test:{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_run_prefix: str) -> str:
    """A key prefix unique to one test, inside the run prefix."""
    return f"{redis_run_prefix}{next(_counter)}:"


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the test PostgreSQL server (skips, or fails under AGENTHOOD_REQUIRE_SERVICES=1)."""
    try:
        import psycopg
    except ImportError:
        _unavailable("PostgreSQL", "psycopg is not installed; install agenthood-mw[postgres]")
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _unavailable("PostgreSQL", f"{POSTGRES_DSN}: {type(exc).__name__}")
    return POSTGRES_DSN


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A throwaway schema, created for one test and dropped afterwards."""
    import psycopg

    schema = f"agenthood_test_{RUN_ID}_{next(_counter)}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
