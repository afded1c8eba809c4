"""A tiny synchronous SQL adapter shared by the SQLite and PostgreSQL ledgers and trace stores.

Queries are written once with ``?`` placeholders and ``{t}`` for the table-name prefix; the
PostgreSQL adapter rewrites the placeholders. Only operator configuration (a validated
identifier) is ever formatted into SQL; every value is a bound parameter.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agenthood_mw._core.urls import check_postgres_dsn
from agenthood_mw._sqlite_files import prepare_sqlite_file

__all__ = ["Database", "PostgresDatabase", "SQLiteDatabase", "split_pg_url", "sqlite_path_from_url"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def check_identifier(value: str, *, option: str) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(
            f"{option}: {value!r} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return value


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///costs.db`` -> ``costs.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/"):
        raise ValueError(f"{url!r}: expected sqlite:///relative.db or sqlite:////absolute.db")
    path = rest[1:]
    if not path:
        raise ValueError(f"{url!r}: the SQLite URL names no file")
    return path


def split_pg_url(url: str) -> tuple[str, str | None]:
    """Remove the ``schema=`` query parameter (ours, not libpq's) from a PostgreSQL URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    kept = []
    for k, v in query:
        if k == "schema":
            schema = v
        else:
            kept.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


class Database:
    """Synchronous access: ``query`` for reads, ``write`` for one transaction of statements."""

    dialect = "sqlite"
    prefix = ""
    index_prefix = ""

    def sql(self, text: str) -> str:
        return text.replace("{t}", self.prefix).replace("{i}", self.index_prefix)

    def script(self, sql: str) -> None:
        """Run ``;``-separated DDL statements."""
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def write(
        self,
        statements: Iterable[tuple[str, Sequence[Sequence[Any]]]],
        *,
        bulk: Iterable[tuple[str, Sequence[Sequence[Any]]]] = (),
    ) -> list[list[int]]:
        """Run ``(sql, rows)`` pairs in one transaction; return each row's rowcount.

        ``bulk`` pairs run after them in the same transaction with ``executemany`` (no
        per-row counts: for rows whose insertion count nobody needs).
        """
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLiteDatabase(Database):
    """One SQLite connection (WAL mode) shared by threads under a lock."""

    def __init__(self, path: str, *, table_prefix: str = "agenthood_") -> None:
        if not isinstance(path, str) or not path:
            raise ValueError("path: expected a SQLite file path or ':memory:'")
        self.prefix = self.index_prefix = check_identifier(table_prefix, option="table_prefix")
        self._lock = threading.Lock()
        if path != ":memory:":
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise ValueError(f"path: directory {directory!r} does not exist (create it first)")
        try:
            prepare_sqlite_file(path)  # created 0600 (agenthood_mw._sqlite_files)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise ValueError(f"path: cannot open the SQLite database {path!r}: {exc}") from None
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(self.sql(sql), tuple(params)).fetchall()

    def write(
        self,
        statements: Iterable[tuple[str, Sequence[Sequence[Any]]]],
        *,
        bulk: Iterable[tuple[str, Sequence[Sequence[Any]]]] = (),
    ) -> list[list[int]]:
        counts = []
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    text = self.sql(sql)
                    counts.append([cur.execute(text, tuple(r)).rowcount for r in rows])
                for sql, rows in bulk:
                    if rows:
                        cur.executemany(self.sql(sql), rows)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return counts

    def script(self, sql: str) -> None:
        with self._lock:
            self._conn.executescript(self.sql(sql))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDatabase(Database):
    """A psycopg 3 connection pool; tables live in ``schema`` (or the search path)."""

    dialect = "postgres"

    def __init__(
        self, dsn: str, *, schema: str | None = None, table_prefix: str = "agenthood_"
    ) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError(
                "the PostgreSQL ledger needs psycopg; install agenthood-mw[postgres]"
            ) from exc
        if not isinstance(dsn, str) or not dsn:
            raise ValueError("dsn: expected a PostgreSQL URL or libpq connection string")
        check_postgres_dsn(dsn, option="dsn")
        self.index_prefix = check_identifier(table_prefix, option="table_prefix")
        if schema is not None:
            check_identifier(schema, option="schema")
            self.prefix = f'"{schema}".{table_prefix}'
        else:
            self.prefix = table_prefix
        self._pool = ConnectionPool(dsn, min_size=1, max_size=4, open=True, timeout=10)

    def sql(self, text: str) -> str:
        return super().sql(text).replace("?", "%s")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(self.sql(sql), tuple(params)).fetchall()
            return rows

    def write(
        self,
        statements: Iterable[tuple[str, Sequence[Sequence[Any]]]],
        *,
        bulk: Iterable[tuple[str, Sequence[Sequence[Any]]]] = (),
    ) -> list[list[int]]:
        counts = []
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for sql, rows in statements:
                text = self.sql(sql)
                per_row = []
                for r in rows:
                    cur.execute(text, tuple(r))
                    per_row.append(cur.rowcount)
                counts.append(per_row)
            for sql, rows in bulk:
                if rows:
                    cur.executemany(self.sql(sql), rows)
        return counts

    def script(self, sql: str) -> None:
        with self._pool.connection() as conn:
            for stmt in self.sql(sql).split(";"):
                if stmt.strip():
                    conn.execute(stmt)

    def close(self) -> None:
        self._pool.close()
