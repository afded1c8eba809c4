"""``PostgresBackend`` (extra ``[postgres]``): memory in PostgreSQL via psycopg 3 + psycopg_pool.

Every primary key leads with ``scope_key`` (the SHA-256 of the scope's storage key: a fixed 32
bytes, because a 256-character id can encode to more than a btree entry may hold); every query
filters on it *and* on the full ``scope_name`` with exact equality. Prefixes are range scans on
a ``COLLATE "C"`` key column (``key >= prefix AND key < upper_bound``); no ``LIKE`` anywhere.
Tables are created, and migrated, on first use under an advisory lock.
"""

# ruff: noqa: S608 - SQL text is built from constants and a validated schema name only;
# every value is a bound parameter.
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._core.urls import check_postgres_dsn
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._errors import SchemaVersionError
from agenthood_mw.memory._records import Event, Record, Tier

try:
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "agenthood_mw.memory.postgres needs psycopg 3 and psycopg-pool; "
        "install agenthood-mw[postgres]"
    ) from exc

__all__ = ["SCHEMA_VERSION", "PostgresBackend"]

#: Version of the table layout this release writes (row in ``<schema>.memory_meta``).
SCHEMA_VERSION: Final = 1
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_KV_COLS: Final = "scope_name, key, value, updated_at, expires_at"
_LIVE: Final = "(expires_at IS NULL OR expires_at > %s)"


def _migrations(q: str) -> dict[int, tuple[str, ...]]:
    return {
        1: (
            f"""CREATE TABLE IF NOT EXISTS {q}.memory_kv (
                scope_key bytea NOT NULL,
                scope_name text NOT NULL,
                tier text NOT NULL,
                key text COLLATE "C" NOT NULL,
                value text NOT NULL,
                search text NOT NULL,
                updated_at double precision NOT NULL,
                expires_at double precision,
                PRIMARY KEY (scope_key, tier, key)
            )""",
            f"""CREATE TABLE IF NOT EXISTS {q}.memory_events (
                scope_key bytea NOT NULL,
                scope_name text NOT NULL,
                ts double precision NOT NULL,
                id text COLLATE "C" NOT NULL,
                data text NOT NULL,
                PRIMARY KEY (scope_key, ts, id)
            )""",
        )
    }


def _digest(scope: MemoryScope) -> bytes:
    return hashlib.sha256(scope.storage_key.encode("ascii")).digest()


class PostgresBackend(MemoryBackend):
    """Memory in PostgreSQL: ``PostgresBackend("postgresql://user@host/db")``.

    Args:
        dsn: a libpq connection string or URL.
        schema: schema holding the tables (created if missing; default ``"agenthood"``);
            lowercase letters, digits and ``_``.
        min_size, max_size: connection pool bounds.
        clock: epoch-seconds clock; TTLs are evaluated against it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "agenthood",
        min_size: int = 1,
        max_size: int = 10,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        if not isinstance(dsn, str) or not dsn:
            raise ValueError("dsn must be a non-empty PostgreSQL connection string")
        check_postgres_dsn(dsn, option="dsn")
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("schema must match [a-z_][a-z0-9_]{0,62}")
        for name, size in (("min_size", min_size), ("max_size", max_size)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"{name} must be a positive int")
        if min_size > max_size:
            raise ValueError("min_size must not exceed max_size")
        self._schema = schema
        self._q = f'"{schema}"'
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True},
            name="agenthood-memory",
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @property
    def schema(self) -> str:
        return self._schema

    async def _conn_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._pool.open(wait=True, timeout=30)
                await self._migrate()
                self._ready = True

    async def _migrate(self) -> None:
        q = self._q
        lock = int.from_bytes(
            hashlib.sha256(f"agenthood_mw.memory:{self._schema}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {q}.memory_meta ("
                "id int PRIMARY KEY CHECK (id = 1), schema_version int NOT NULL)"
            )
            row = await (
                await conn.execute(f"SELECT schema_version FROM {q}.memory_meta")
            ).fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"memory schema {self._schema!r} is at version {version}, newer than this "
                    f"agenthood-mw supports ({SCHEMA_VERSION}); upgrade agenthood-mw"
                )
            migrations = _migrations(q)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in migrations[target]:
                    await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {q}.memory_meta (id, schema_version) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET schema_version = excluded.schema_version",
                    (target,),
                )

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        await self._conn_ready()
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _close(self) -> None:
        await self._pool.close()

    # ---------------------------------------------------------------- key/value tiers
    @staticmethod
    def _rec(tier: Tier, row: tuple[Any, ...]) -> Record:
        return Record(row[0], tier, row[1], json.loads(row[2]), row[3], row[4])

    async def _put(
        self,
        scope: MemoryScope,
        tier: Tier,
        key: str,
        value_json: str,
        search: str,
        now: float,
        expires_at: float | None,
    ) -> Record:
        rows = await self._fetch(
            f"INSERT INTO {self._q}.memory_kv (scope_key, scope_name, tier, key, value, search, "
            "updated_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (scope_key, tier, key) DO UPDATE SET value = excluded.value, "
            "search = excluded.search, updated_at = excluded.updated_at, "
            "expires_at = excluded.expires_at "
            "WHERE memory_kv.scope_name = excluded.scope_name "
            f"RETURNING {_KV_COLS}",
            (_digest(scope), scope.storage_key, tier, key, value_json, search, now, expires_at),
        )
        if not rows:
            raise RuntimeError("scope digest collision: refusing to overwrite another scope")
        return self._rec(tier, rows[0])

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        rows = await self._fetch(
            f"SELECT {_KV_COLS} FROM {self._q}.memory_kv WHERE scope_key = %s AND "
            f"scope_name = %s AND tier = %s AND key = %s AND {_LIVE}",
            (_digest(scope), scope.storage_key, tier, key, now),
        )
        return self._rec(tier, rows[0]) if rows else None

    async def _delete(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> bool:
        rows = await self._fetch(
            f"DELETE FROM {self._q}.memory_kv WHERE scope_key = %s AND scope_name = %s "
            "AND tier = %s AND key = %s RETURNING expires_at",
            (_digest(scope), scope.storage_key, tier, key),
        )
        return bool(rows) and (rows[0][0] is None or rows[0][0] > now)

    async def _list(
        self,
        scope: MemoryScope,
        tier: Tier,
        prefix: str,
        upper: str | None,
        after: str | None,
        limit: int,
        now: float,
    ) -> Sequence[Record]:
        sql = (
            f"SELECT {_KV_COLS} FROM {self._q}.memory_kv WHERE scope_key = %s AND "
            "scope_name = %s AND tier = %s AND key >= %s"
        )
        params: list[Any] = [_digest(scope), scope.storage_key, tier, prefix]
        if upper is not None:
            sql += " AND key < %s"
            params.append(upper)
        if after is not None:
            sql += " AND key > %s"
            params.append(after)
        sql += f" AND {_LIVE} ORDER BY key LIMIT %s"
        params += [now, limit]
        return [self._rec(tier, row) for row in await self._fetch(sql, params)]

    async def _search(
        self, scope: MemoryScope, tier: Tier, terms: tuple[str, ...], limit: int, now: float
    ) -> Sequence[Record]:
        match = " AND ".join("strpos(search, %s) > 0" for _ in terms)
        sql = (
            f"SELECT {_KV_COLS} FROM {self._q}.memory_kv WHERE scope_key = %s AND "
            f"scope_name = %s AND tier = %s AND {_LIVE} AND {match} ORDER BY key LIMIT %s"
        )
        params = [_digest(scope), scope.storage_key, tier, now, *terms, limit]
        return [self._rec(tier, row) for row in await self._fetch(sql, params)]

    # ---------------------------------------------------------------- episodic log
    async def _append_event(
        self, scope: MemoryScope, event_id: str, timestamp: float, data_json: str
    ) -> Event:
        rows = await self._fetch(
            f"INSERT INTO {self._q}.memory_events (scope_key, scope_name, ts, id, data) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING scope_name, id, ts, data",
            (_digest(scope), scope.storage_key, timestamp, event_id, data_json),
        )
        row = rows[0]
        return Event(row[0], row[1], row[2], json.loads(row[3]))

    async def _list_events(
        self,
        scope: MemoryScope,
        since: float | None,
        until: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> Sequence[Event]:
        sql = (
            f"SELECT scope_name, id, ts, data FROM {self._q}.memory_events "
            "WHERE scope_key = %s AND scope_name = %s"
        )
        params: list[Any] = [_digest(scope), scope.storage_key]
        if since is not None:
            sql += " AND ts >= %s"
            params.append(since)
        if until is not None:
            sql += " AND ts < %s"
            params.append(until)
        if before is not None:
            sql += " AND (ts, id) < (%s, %s)"
            params += before
        sql += " ORDER BY ts DESC, id DESC LIMIT %s"
        params.append(limit)
        rows = await self._fetch(sql, params)
        return [Event(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def _erase(self, scope: MemoryScope) -> int:
        await self._conn_ready()
        params = (_digest(scope), scope.storage_key)
        async with self._pool.connection() as conn, conn.transaction():
            a = await conn.execute(
                f"DELETE FROM {self._q}.memory_kv WHERE scope_key = %s AND scope_name = %s",
                params,
            )
            b = await conn.execute(
                f"DELETE FROM {self._q}.memory_events WHERE scope_key = %s AND scope_name = %s",
                params,
            )
            return max(a.rowcount, 0) + max(b.rowcount, 0)
