"""Several worker processes sharing Redis (rate limits) and PostgreSQL (memory, costs, traces).

Every worker builds this same app; the state that must be shared lives outside the process:

* rate limits in Redis, so "20 per minute" is 20 for the whole service, not 20 per worker;
* memory, the cost ledger and run traces in PostgreSQL (schema ``AGENTHOOD_PG_SCHEMA``).

Run it with four workers:

    export AGENTHOOD_JWT_SECRET=...                       # 32+ bytes, shared by all workers
    export AGENTHOOD_REDIS_URL=redis://127.0.0.1:6379/0
    export AGENTHOOD_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/postgres
    agenthood serve examples.multiworker_redis:app --workers 4 --port 3000
    # or: uvicorn examples.multiworker_redis:app --workers 4 --port 3000

Operator commands read the same stores:

    agenthood costs --ledger "$AGENTHOOD_POSTGRES_DSN?schema=agenthood"
"""

from __future__ import annotations

import contextlib
import os

from agenthood_mw.api import AgenthoodAPI, OfflineProvider
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import AuthMiddleware
from agenthood_mw.memory.postgres import PostgresBackend
from agenthood_mw.metering import PriceTable, ThinkingBudget
from agenthood_mw.ratelimit import RateLimitMiddleware


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        raise ValueError(f"{name} is not set")
    return value


def _ensure_schema(dsn: str, schema: str) -> None:
    """Create the schema once (the ledger and trace tables are created inside it)."""
    import psycopg
    from psycopg import sql

    # another worker may create it at the same moment: that is fine
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.UniqueViolation),
    ):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def make_app() -> AgenthoodAPI:
    secret = _env("AGENTHOOD_JWT_SECRET")
    redis_url = _env("AGENTHOOD_REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_prefix = _env("AGENTHOOD_REDIS_PREFIX", "agenthood:")
    dsn = _env("AGENTHOOD_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    schema = _env("AGENTHOOD_PG_SCHEMA", "agenthood")
    _ensure_schema(dsn, schema)
    store = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    api = AgenthoodAPI(
        agents=demo_agents(),
        memory={"isolation": "per-user", "backend": PostgresBackend(dsn, schema=schema)},
        provider=OfflineProvider(),
        prices=PriceTable({"agenthood-offline-1": {"input": "0.75", "output": "2.00"}}),
        ledger=store,
        traces=store,
        thinking_budget=ThinkingBudget(max_steps=20, max_seconds=120),
    )
    api.add_middleware(
        RateLimitMiddleware,
        window="1m",
        max=20,
        burst=5,
        storage=redis_url,
        key_prefix=redis_prefix + "ratelimit:",
        fail_open=False,  # a Redis outage answers 503 rather than admitting unlimited traffic
        exempt_paths=["/health"],
    )
    api.add_middleware(
        AuthMiddleware,
        strategy="jwt",
        secret=secret,
        algorithms=["HS256"],
        audience="agenthood-api",
        exempt_paths=["/health", "/openapi.json"],
    )
    return api


app = make_app()
