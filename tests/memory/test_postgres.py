"""PostgresBackend specifics: schema option, migrations, scope-leading keys, no LIKE."""

from __future__ import annotations

import inspect

import pytest

from agenthood_mw.memory import MemoryScope, SchemaVersionError
from agenthood_mw.memory import postgres as pg_module

pytestmark = pytest.mark.postgres


async def test_tables_and_keys_lead_with_the_scope(postgres_dsn: str, postgres_schema: str) -> None:
    import psycopg

    first = pg_module.PostgresBackend(postgres_dsn, schema=postgres_schema)
    second = pg_module.PostgresBackend(postgres_dsn, schema=postgres_schema)
    scope = MemoryScope.operator(user="alice")
    try:
        await first.put(scope, "facts", "k", 1)
        assert (await second.get(scope, "facts", "k")).value == 1  # type: ignore[union-attr]
    finally:
        await first.close()
        await second.close()
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        cur = await conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname LIKE 'memory_%%' AND c.relname <> 'memory_meta'",
            (postgres_schema,),
        )
        indexes = await cur.fetchall()
        assert {name for name, _ in indexes} == {"memory_kv", "memory_events"}
        for _, definition in indexes:
            assert "(scope_key," in definition
        cur = await conn.execute(
            f'SELECT schema_version FROM "{postgres_schema}".memory_meta'  # noqa: S608
        )
        assert await cur.fetchone() == (pg_module.SCHEMA_VERSION,)


async def test_newer_schema_is_refused(postgres_dsn: str, postgres_schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(
            f'CREATE TABLE "{postgres_schema}".memory_meta (id int PRIMARY KEY, '
            "schema_version int NOT NULL)"
        )
        await conn.execute(
            f'INSERT INTO "{postgres_schema}".memory_meta VALUES (1, %s)',  # noqa: S608
            (pg_module.SCHEMA_VERSION + 1,),
        )
    backend = pg_module.PostgresBackend(postgres_dsn, schema=postgres_schema)
    try:
        with pytest.raises(SchemaVersionError, match="newer"):
            await backend.get(MemoryScope.operator(user="a"), "facts", "k")
    finally:
        await backend.close()


def test_options_are_validated() -> None:
    dsn = "postgresql://postgres@127.0.0.1/test"
    with pytest.raises(ValueError, match="schema"):
        pg_module.PostgresBackend(dsn, schema='x"; DROP TABLE y; --')
    with pytest.raises(ValueError, match="schema"):
        pg_module.PostgresBackend(dsn, schema="Upper")
    with pytest.raises(ValueError, match="dsn"):
        pg_module.PostgresBackend("")
    with pytest.raises(ValueError, match="min_size"):
        pg_module.PostgresBackend(dsn, min_size=5, max_size=2)


def test_no_like_on_user_text() -> None:
    source = inspect.getsource(pg_module).upper()
    assert " LIKE " not in source and "ILIKE" not in source and "SIMILAR TO" not in source
