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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from agenthood_mw._core.urls import check_postgres_dsn
from agenthood_mw._sqlite_files import prepare_sqlite_file

__all__ = [
    "Column",
    "Database",
    "PostgresDatabase",
    "SQLiteDatabase",
    "Transaction",
    "split_pg_url",
    "split_spool_param",
    "sqlite_path_from_url",
]

#: A column of a bulk insert: its name and PostgreSQL type (SQLite ignores the type).
Column = tuple[str, str]

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


#: ``spool_dir`` default: next to the SQLite file; a per-database directory for PostgreSQL.
DEFAULT_SPOOL = "default"


def split_spool_param(url: str) -> tuple[str, str | None]:
    """Remove the ``spool_dir=`` query parameter (``off``: no spool) from a store URL;
    returns the URL and the spool directory (:data:`DEFAULT_SPOOL` when absent)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, DEFAULT_SPOOL
    spool: str | None = DEFAULT_SPOOL
    kept = []
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k == "spool_dir":
            spool = None if v in ("", "off", "none") else v
        else:
            kept.append((k, v))
    return (base + "?" + urlencode(kept)) if kept else base, spool


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

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One transaction for :class:`Transaction` bulk operations (committed on exit)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class Transaction:
    """Bulk operations inside one transaction (see :meth:`Database.transaction`)."""

    def insert(
        self,
        table: str,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Any]],
        *,
        returning: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """``INSERT ... ON CONFLICT DO NOTHING`` of ``rows`` into ``{t}table``; returns the
        ``returning`` columns of the rows actually inserted (nothing when none are asked)."""
        raise NotImplementedError

    def select_in(
        self,
        table: str,
        keys: Sequence[Column],
        values: Sequence[Sequence[Any]],
        columns: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        """``columns`` of the rows of ``{t}table`` whose ``keys`` equal one of ``values``."""
        raise NotImplementedError


def _names(columns: Sequence[Column] | Sequence[str]) -> str:
    return ", ".join(c if isinstance(c, str) else c[0] for c in columns)


class _SQLiteTransaction(Transaction):
    def __init__(self, db: SQLiteDatabase, cur: sqlite3.Cursor) -> None:
        self._db, self._cur = db, cur

    def insert(
        self,
        table: str,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Any]],
        *,
        returning: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(columns))
        sql = self._db.sql(
            f"INSERT INTO {{t}}{table} ({_names(columns)}) VALUES ({marks}) "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )
        if not returning:
            self._cur.executemany(sql, rows)
            return []
        # In-process: one statement per row costs microseconds and tells which were new.
        names = [c[0] for c in columns]
        at = [names.index(r) for r in returning]
        execute, out = self._cur.execute, []
        for row in rows:
            if execute(sql, tuple(row)).rowcount > 0:
                out.append(tuple(row[i] for i in at))
        return out

    def select_in(
        self,
        table: str,
        keys: Sequence[Column],
        values: Sequence[Sequence[Any]],
        columns: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        where = " AND ".join(f"{k[0]} = ?" for k in keys)
        sql = self._db.sql(f"SELECT {_names(columns)} FROM {{t}}{table} WHERE {where}")  # noqa: S608
        out: list[tuple[Any, ...]] = []
        for value in values:
            out.extend(self._cur.execute(sql, tuple(value)).fetchall())
        return out


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

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTransaction(self, cur)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

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
        # (backend pid, table) pairs whose session already has its staging table.
        self._staged: set[tuple[int, str]] = set()

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

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._pool.connection() as conn:
            tx = _PostgresTransaction(self, conn)
            try:
                with conn.transaction():
                    yield tx
            except BaseException:
                # E.g. a pool reset dropped the session's staging tables: create them again.
                self._staged = {k for k in self._staged if k[0] != tx.pid}
                raise
            self._staged.update(tx.staged)

    def script(self, sql: str) -> None:
        with self._pool.connection() as conn:
            for stmt in self.sql(sql).split(";"):
                if stmt.strip():
                    conn.execute(stmt)

    def close(self) -> None:
        self._pool.close()


class _PostgresTransaction(Transaction):
    """Bulk inserts go through ``COPY`` into a session-local staging table and one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: one round trip per batch, not per row
    (about ten times the rows per second of row-by-row inserts; ``benchmarks/bench_ledger.py``).
    """

    def __init__(self, db: PostgresDatabase, conn: Any) -> None:
        self._db, self._conn = db, conn
        self.pid: int = conn.info.backend_pid
        self.staged: list[tuple[int, str]] = []
        self._used: set[str] = set()

    def _stage(self, table: str) -> str:
        name = f"_agenthood_stage_{self._db.index_prefix}{table}"
        key = (self.pid, name)
        if key not in self._db._staged and key not in self.staged:
            self._conn.execute(
                self._db.sql(
                    f"CREATE TEMP TABLE IF NOT EXISTS {name} (LIKE {{t}}{table}) "
                    "ON COMMIT DELETE ROWS"
                )
            )
            self.staged.append(key)
        elif name in self._used:  # a second insert into one table in this transaction
            self._conn.execute(f"DELETE FROM {name}")  # noqa: S608 - our own identifier
        self._used.add(name)
        return name

    def insert(
        self,
        table: str,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Any]],
        *,
        returning: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        stage = self._stage(table)
        names = _names(columns)
        with self._conn.cursor() as cur:
            # Text format: the server range-checks every value. (Binary COPY halves the client's
            # share, but psycopg truncates an int too large for int4 silently: 2**40 + 5 -> 5.)
            with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            tail = f" RETURNING {_names(returning)}" if returning else ""
            cur.execute(
                self._db.sql(
                    f"INSERT INTO {{t}}{table} ({names}) SELECT {names} FROM {stage} "  # noqa: S608
                    f"ON CONFLICT DO NOTHING{tail}"
                )
            )
            out: list[tuple[Any, ...]] = cur.fetchall() if returning else []
        return out

    def select_in(
        self,
        table: str,
        keys: Sequence[Column],
        values: Sequence[Sequence[Any]],
        columns: Sequence[str],
    ) -> list[tuple[Any, ...]]:
        arrays = ", ".join(f"%s::{k[1]}[]" for k in keys)
        names = ", ".join(f"k{i}" for i in range(len(keys)))
        on = " AND ".join(f"x.{k[0]} = k.k{i}" for i, k in enumerate(keys))
        cols = ", ".join(f"x.{c}" for c in columns)
        sql = self._db.sql(
            f"SELECT {cols} FROM {{t}}{table} AS x JOIN unnest({arrays}) AS k({names}) ON {on}"  # noqa: S608
        )
        params = [list(col) for col in zip(*values, strict=True)]
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
        return rows
