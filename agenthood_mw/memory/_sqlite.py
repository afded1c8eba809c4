"""``SQLiteBackend``: the embedded, persistent default (one file, WAL, versioned schema).

Blocking sqlite3 calls run in a small thread pool (one connection per worker thread), never on
the event loop. WAL mode plus a busy timeout make one file safe to share between threads and
processes; every write is a single statement or an explicit ``BEGIN IMMEDIATE`` transaction.
"""

# ruff: noqa: S608 - SQL text is built from constants only; every value is a bound parameter.
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._sqlite_files import prepare_sqlite_file
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._errors import SchemaVersionError
from agenthood_mw.memory._records import Event, Record, Tier

__all__ = ["SCHEMA_VERSION", "SQLiteBackend"]

#: Version of the on-disk schema this release writes (``PRAGMA user_version``).
SCHEMA_VERSION: Final = 1
_R = TypeVar("_R")

_MIGRATIONS: Final = {
    1: (
        """CREATE TABLE IF NOT EXISTS memory_kv (
            scope_key TEXT NOT NULL,
            tier TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            search TEXT NOT NULL,
            updated_at REAL NOT NULL,
            expires_at REAL,
            PRIMARY KEY (scope_key, tier, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS memory_events (
            scope_key TEXT NOT NULL,
            ts REAL NOT NULL,
            id TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (scope_key, ts, id)
        ) WITHOUT ROWID""",
    ),
}
_LIVE: Final = "(expires_at IS NULL OR expires_at > ?)"
_KV_COLS: Final = "scope_key, key, value, updated_at, expires_at"


class SQLiteBackend(MemoryBackend):
    """Memory in one SQLite file: ``SQLiteBackend("agenthood.db")``.

    Args:
        path: database file (created if missing; its directory must exist).
        threads: worker threads (= connections) running the blocking calls.
        timeout: seconds to wait for a lock held by another connection or process.
        clock: epoch-seconds clock (see :class:`MemoryBackend`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 4,
        timeout: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        if not isinstance(path, str | os.PathLike):
            raise TypeError("path must be a str or os.PathLike")
        self._path = os.fspath(path)
        if not self._path or self._path == ":memory:" or self._path.startswith("file:"):
            raise ValueError(
                "path must name a database file (use InMemoryBackend for a non-persistent store)"
            )
        directory = os.path.dirname(os.path.abspath(self._path))
        if not os.path.isdir(directory):
            raise ValueError(
                f"path: directory {directory!r} does not exist (create it first; the database "
                "file itself is created on first use)"
            )
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError("threads must be a positive int")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._timeout = float(timeout)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="agenthood-sqlite")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._migrated = False

    @property
    def path(self) -> str:
        return self._path

    # ---------------------------------------------------------------- connections
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._conns_lock:
                prepare_sqlite_file(self._path)
                conn = sqlite3.connect(
                    self._path,
                    timeout=self._timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                self._conns.append(conn)
                conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
                self._enable_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                if not self._migrated:
                    self._migrate(conn)
                    self._migrated = True
            self._local.conn = conn
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs a moment of exclusive access and does not always go
        # through the busy handler, so another process creating the file can make it fail with
        # "database is locked": retry (bounded by the configured timeout).
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"memory database schema version {version} is newer than this agenthood-mw "
                    f"supports ({SCHEMA_VERSION}); upgrade agenthood-mw"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _run(self, fn: Callable[..., _R], *args: Any) -> _R:
        def call() -> _R:
            return fn(self._conn(), *args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    # ---------------------------------------------------------------- hooks
    @staticmethod
    def _rec(tier: Tier, row: Any) -> Record:
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
        params = (scope.storage_key, tier, key, value_json, search, now, expires_at)

        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "INSERT INTO memory_kv (scope_key, tier, key, value, search, updated_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope_key, tier, key) DO UPDATE SET value = excluded.value, "
                "search = excluded.search, updated_at = excluded.updated_at, "
                f"expires_at = excluded.expires_at RETURNING {_KV_COLS}",
                params,
            ).fetchone()

        return self._rec(tier, await self._run(work))

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                f"SELECT {_KV_COLS} FROM memory_kv "
                f"WHERE scope_key = ? AND tier = ? AND key = ? AND {_LIVE}",
                (scope.storage_key, tier, key, now),
            ).fetchone()

        row = await self._run(work)
        return None if row is None else self._rec(tier, row)

    async def _delete(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> bool:
        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "DELETE FROM memory_kv WHERE scope_key = ? AND tier = ? AND key = ? "
                "RETURNING expires_at",
                (scope.storage_key, tier, key),
            ).fetchone()

        row = await self._run(work)
        return row is not None and (row[0] is None or row[0] > now)

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
        sql = f"SELECT {_KV_COLS} FROM memory_kv WHERE scope_key = ? AND tier = ? AND key >= ?"
        params: list[Any] = [scope.storage_key, tier, prefix]
        if upper is not None:
            sql += " AND key < ?"
            params.append(upper)
        if after is not None:
            sql += " AND key > ?"
            params.append(after)
        sql += f" AND {_LIVE} ORDER BY key LIMIT ?"
        params += [now, limit]
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [self._rec(tier, row) for row in rows]

    async def _search(
        self, scope: MemoryScope, tier: Tier, terms: tuple[str, ...], limit: int, now: float
    ) -> Sequence[Record]:
        match = " AND ".join("instr(search, ?) > 0" for _ in terms)
        sql = (
            f"SELECT {_KV_COLS} FROM memory_kv WHERE scope_key = ? AND tier = ? AND {_LIVE} "
            f"AND {match} ORDER BY key LIMIT ?"
        )
        params = [scope.storage_key, tier, now, *terms, limit]
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [self._rec(tier, row) for row in rows]

    async def _append_event(
        self, scope: MemoryScope, event_id: str, timestamp: float, data_json: str
    ) -> Event:
        params = (scope.storage_key, timestamp, event_id, data_json)

        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "INSERT INTO memory_events (scope_key, ts, id, data) VALUES (?, ?, ?, ?) "
                "RETURNING scope_key, id, ts, data",
                params,
            ).fetchone()

        row = await self._run(work)
        return Event(row[0], row[1], row[2], json.loads(row[3]))

    async def _list_events(
        self,
        scope: MemoryScope,
        since: float | None,
        until: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> Sequence[Event]:
        sql = "SELECT scope_key, id, ts, data FROM memory_events WHERE scope_key = ?"
        params: list[Any] = [scope.storage_key]
        if since is not None:
            sql += " AND ts >= ?"
            params.append(since)
        if until is not None:
            sql += " AND ts < ?"
            params.append(until)
        if before is not None:
            sql += " AND (ts, id) < (?, ?)"
            params += before
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        params.append(limit)
        rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [Event(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    async def _erase(self, scope: MemoryScope) -> int:
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute(
                    "DELETE FROM memory_kv WHERE scope_key = ?", (scope.storage_key,)
                ).rowcount
                n += conn.execute(
                    "DELETE FROM memory_events WHERE scope_key = ?", (scope.storage_key,)
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n

        return await self._run(work)
