"""SQLite and PostgreSQL ledgers (one schema, one code path, two adapters)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from agenthood_mw._core.spikes import History, day_of
from agenthood_mw._core.urls import redact
from agenthood_mw.metering._ledger import Ledger, Per, Spend, _spend_row
from agenthood_mw.metering._records import (
    KEPT,
    NEW,
    REPLAY,
    RunRecord,
    UsageEvent,
    as_counted,
)
from agenthood_mw.metering._sql import (
    DEFAULT_SPOOL,
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    Transaction,
    split_pg_url,
    split_spool_param,
    sqlite_path_from_url,
)

__all__ = ["PostgresLedger", "SQLLedger", "SQLiteLedger", "ledger_from_url"]

# Column per report dimension: chosen from this fixed map, never from user text.
_COLUMN: Final = {"user": "scope_key", "agent": "agent", "tenant": "tenant"}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS {t}usage (
  scope_key TEXT NOT NULL,
  event_key TEXT NOT NULL,
  run_id TEXT NOT NULL,
  ts DOUBLE PRECISION NOT NULL,
  day INTEGER NOT NULL,
  tenant TEXT,
  agent TEXT,
  model TEXT NOT NULL,
  provider TEXT,
  input_tokens BIGINT NOT NULL,
  output_tokens BIGINT NOT NULL,
  cached_input_tokens BIGINT NOT NULL,
  reasoning_tokens BIGINT NOT NULL,
  cache_creation_input_tokens BIGINT NOT NULL,
  cost_nanos BIGINT NOT NULL,
  PRIMARY KEY (scope_key, event_key)
);
CREATE INDEX IF NOT EXISTS {i}usage_user_day ON {t}usage (scope_key, day);
CREATE INDEX IF NOT EXISTS {i}usage_agent_day ON {t}usage (agent, day);
CREATE INDEX IF NOT EXISTS {i}usage_tenant_day ON {t}usage (tenant, day);
CREATE INDEX IF NOT EXISTS {i}usage_day ON {t}usage (day);
CREATE TABLE IF NOT EXISTS {t}runs (
  scope_key TEXT NOT NULL,
  run_id TEXT NOT NULL,
  tenant TEXT,
  agent TEXT,
  path TEXT,
  started_at DOUBLE PRECISION NOT NULL,
  ended_at DOUBLE PRECISION NOT NULL,
  status INTEGER,
  stop_reason TEXT,
  error TEXT,
  input_tokens BIGINT NOT NULL,
  output_tokens BIGINT NOT NULL,
  cost_nanos BIGINT NOT NULL,
  steps INTEGER NOT NULL,
  tool_calls INTEGER NOT NULL,
  PRIMARY KEY (scope_key, run_id)
);
CREATE TABLE IF NOT EXISTS {t}alerts (
  kind TEXT NOT NULL,
  subject TEXT NOT NULL,
  day INTEGER NOT NULL,
  ts DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (kind, subject, day)
)
"""

_USAGE_COLUMNS: Final = (
    ("scope_key", "text"),
    ("event_key", "text"),
    ("run_id", "text"),
    ("ts", "float8"),
    ("day", "int4"),
    ("tenant", "text"),
    ("agent", "text"),
    ("model", "text"),
    ("provider", "text"),
    ("input_tokens", "int8"),
    ("output_tokens", "int8"),
    ("cached_input_tokens", "int8"),
    ("reasoning_tokens", "int8"),
    ("cache_creation_input_tokens", "int8"),
    ("cost_nanos", "int8"),
)
_RUN_COLUMNS: Final = (
    ("scope_key", "text"),
    ("run_id", "text"),
    ("tenant", "text"),
    ("agent", "text"),
    ("path", "text"),
    ("started_at", "float8"),
    ("ended_at", "float8"),
    ("status", "int4"),
    ("stop_reason", "text"),
    ("error", "text"),
    ("input_tokens", "int8"),
    ("output_tokens", "int8"),
    ("cost_nanos", "int8"),
    ("steps", "int4"),
    ("tool_calls", "int4"),
)
_EVENT_KEY: Final = (("scope_key", "text"), ("event_key", "text"))
_EVENT_COLS: Final = (
    "event_key, run_id, ts, model, provider, input_tokens, output_tokens, cached_input_tokens, "
    "reasoning_tokens, cache_creation_input_tokens, cost_nanos"
)


def _usage_rows(
    runs: Sequence[RunRecord],
) -> tuple[dict[tuple[str, str], tuple[Any, ...]], bool]:
    """The usage rows of ``runs``, one per (scope, event key): the first run holding a key is
    the one it is counted for. Also whether a key was repeated within the batch."""
    rows: dict[tuple[str, str], tuple[Any, ...]] = {}
    repeated = False
    for run in runs:
        key, tenant, agent = run.scope.storage_key, run.tenant, run.agent
        for ev in run.usage:
            ek = (key, ev.event_key)
            if ek in rows:
                repeated = True
                continue
            rows[ek] = (key, ev.event_key, ev.run_id, ev.ts, day_of(ev.ts), tenant, agent,
                        ev.model, ev.provider, ev.input_tokens, ev.output_tokens,
                        ev.cached_input_tokens, ev.reasoning_tokens,
                        ev.cache_creation_input_tokens, ev.cost_nanos)  # fmt: skip
    return rows, repeated


def _resolve(
    tx: Transaction,
    runs: Sequence[RunRecord],
    rows: dict[tuple[str, str], tuple[Any, ...]],
    inserted: set[tuple[str, str]],
) -> list[tuple[int, ...]]:
    """Statuses when some key was not inserted (stored before, for this run or another) or
    repeated within the batch."""
    owner = {ek: rows[ek][2] for ek in inserted}
    older = [ek for ek in rows if ek not in inserted]
    if older:
        found = tx.select_in("usage", _EVENT_KEY, older, ("scope_key", "event_key", "run_id"))
        owner.update(((k, e), run_id) for k, e, run_id in found)
    return [_statuses(run, owner, inserted) for run in runs]


def _statuses(
    run: RunRecord, owner: dict[tuple[str, str], str], inserted: set[tuple[str, str]]
) -> tuple[int, ...]:
    """NEW / KEPT / REPLAY of each usage event of ``run`` (``owner``: the run id each key is
    stored for; ``inserted``: keys stored by this batch, each counted once, for its owner)."""
    key, run_id, out = run.scope.storage_key, run.run_id, []
    for ev in run.usage:
        ek = (key, ev.event_key)
        if owner.get(ek) != run_id:
            out.append(REPLAY)
        elif ek in inserted:
            out.append(NEW)
            inserted.discard(ek)  # a repeat of this key within the same run is KEPT
        else:
            out.append(KEPT)
    return tuple(out)


def _run_row(run: RunRecord, statuses: tuple[int, ...]) -> tuple[Any, ...]:
    t = as_counted(run, statuses).totals
    return (run.scope.storage_key, run.run_id, run.tenant, run.agent, run.path, run.started_at,
            run.ended_at, run.status, run.stop_reason, run.error, t.input_tokens,
            t.output_tokens, t.cost_nanos, t.steps, t.tool_calls)  # fmt: skip


class SQLLedger(Ledger):
    """A ledger over a :class:`~agenthood_mw.metering._sql.Database` adapter."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._closed = False
        db.script(_SCHEMA)

    def write_usage(self, runs: Sequence[RunRecord]) -> list[tuple[int, ...]]:
        rows, repeated = _usage_rows(runs)
        with self._db.transaction() as tx:
            stored = tx.insert(
                "usage", _USAGE_COLUMNS, list(rows.values()), returning=("scope_key", "event_key")
            )
            if len(stored) == len(rows) and not repeated:
                statuses = [(NEW,) * len(run.usage) for run in runs]  # all new: the common case
            else:
                statuses = _resolve(tx, runs, rows, set(stored))
            tx.insert(
                "runs",
                _RUN_COLUMNS,
                [_run_row(r, st) for r, st in zip(runs, statuses, strict=True)],
            )
        return statuses

    def spend_between(self, per: Per, subject: str, since: float, until: float) -> int:
        col = _COLUMN[per]
        lo_day = day_of(since) if since > 0 else -(2**31)
        hi_day = day_of(until) if until != float("inf") else 2**31 - 1
        rows = self._db.query(
            f"SELECT COALESCE(SUM(cost_nanos), 0) FROM {{t}}usage WHERE {col} = ? "  # noqa: S608
            "AND day >= ? AND day <= ? AND ts >= ? AND ts < ?",
            (subject, lo_day, hi_day, since, min(until, 1e18)),
        )
        return int(rows[0][0])

    def history(self, per: Per, subject: str, today: int, days: int) -> History:
        col = _COLUMN[per]
        rows = self._db.query(
            f"SELECT day, SUM(cost_nanos) FROM {{t}}usage WHERE {col} = ? "  # noqa: S608
            "AND day >= ? AND day <= ? GROUP BY day",
            (subject, today - days, today),
        )
        by_day = {int(d): int(n) for d, n in rows}
        first = self._db.query(
            f"SELECT MIN(day) FROM {{t}}usage WHERE {col} = ?",  # noqa: S608
            (subject,),
        )[0][0]
        prev = tuple(by_day.get(d, 0) for d in range(today - days, today))
        return History(by_day.get(today, 0), prev, None if first is None else int(first))

    def claim_alert(self, kind: str, subject: str, day: int, ts: float) -> bool:
        counts = self._db.write(
            [
                (
                    "INSERT INTO {t}alerts (kind, subject, day, ts) VALUES (?,?,?,?) "
                    "ON CONFLICT DO NOTHING",
                    [(kind, subject, day, ts)],
                )
            ]
        )
        return counts[0][0] > 0

    def _user_events(
        self, scope_key: str, since: float | None, until: float | None, limit: int
    ) -> list[UsageEvent]:
        rows = self._db.query(
            f"SELECT {_EVENT_COLS} FROM {{t}}usage WHERE scope_key = ? "  # noqa: S608
            "AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT ?",
            (scope_key, since or 0.0, until or 1e18, int(limit)),
        )
        return [UsageEvent(*r) for r in rows]

    def _report(self, per: Per, since: float | None, until: float | None) -> list[Spend]:
        col = _COLUMN[per]
        rows = self._db.query(
            f"SELECT {col}, SUM(cost_nanos), SUM(input_tokens), SUM(output_tokens), COUNT(*) "  # noqa: S608
            f"FROM {{t}}usage WHERE {col} IS NOT NULL AND ts >= ? AND ts < ? GROUP BY {col}",
            (since or 0.0, until or 1e18),
        )
        out = [_spend_row(per, r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
        out.sort(key=lambda r: (-r.cost_nanos, r.subject))
        return out

    def _erase(self, scope_key: str) -> int:
        counts = self._db.write(
            [
                ("DELETE FROM {t}usage WHERE scope_key = ?", [(scope_key,)]),
                ("DELETE FROM {t}runs WHERE scope_key = ?", [(scope_key,)]),
            ]
        )
        return counts[0][0]

    def close_sync(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()


def _spool_option(value: object) -> str | None:
    if value is None or value == DEFAULT_SPOOL:
        return None if value is None else DEFAULT_SPOOL
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise TypeError("spool_dir: expected a directory path, 'default', or None (no spool)")
    return os.fspath(value)


def default_pg_spool_dir(dsn: str, schema: str | None, table_prefix: str) -> str:
    """``$AGENTHOOD_SPOOL_DIR`` (else ``$XDG_STATE_HOME/agenthood/spool``, by default
    ``~/.local/state/agenthood/spool``) plus one subdirectory per database, schema and table
    prefix, so that runs spooled for one ledger are never replayed into another."""
    base = os.environ.get("AGENTHOOD_SPOOL_DIR")
    if not base:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
        base = os.path.join(state, "agenthood", "spool")
    ident = hashlib.sha256(f"{redact(dsn)}|{schema}|{table_prefix}".encode()).hexdigest()[:16]
    return os.path.join(base, f"pg-{ident}")


class SQLiteLedger(SQLLedger):
    """A ledger in a SQLite file (``sqlite:///costs.db``); WAL mode, safe across threads.

    Args:
        path: the database file (``":memory:"`` for a throwaway one).
        table_prefix: prefix of the table names.
        spool_dir: the metering recorder's crash spool (see ``docs/deployment.md``): by
            default ``<path>.spool`` next to the file; ``None``: no spool (runs not yet
            written are lost if the process is killed).
    """

    def __init__(
        self, path: str, *, table_prefix: str = "agenthood_", spool_dir: object = DEFAULT_SPOOL
    ) -> None:
        super().__init__(SQLiteDatabase(path, table_prefix=table_prefix))
        spool = _spool_option(spool_dir)
        if spool == DEFAULT_SPOOL:
            spool = None if path == ":memory:" else os.path.abspath(path) + ".spool"
        self.spool_dir = spool


class PostgresLedger(SQLLedger):
    """A ledger in PostgreSQL (``postgresql://...``) through a psycopg 3 connection pool.

    Args:
        dsn: libpq connection string or URL.
        schema: schema holding the tables (must exist); default: the search path.
        table_prefix: prefix of the table names.
        spool_dir: the metering recorder's crash spool (see ``docs/deployment.md``): by
            default a directory per database under ``$AGENTHOOD_SPOOL_DIR`` (else
            ``~/.local/state/agenthood/spool``); ``None``: no spool.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        table_prefix: str = "agenthood_",
        spool_dir: object = DEFAULT_SPOOL,
    ) -> None:
        spool = _spool_option(spool_dir)
        super().__init__(PostgresDatabase(dsn, schema=schema, table_prefix=table_prefix))
        if spool == DEFAULT_SPOOL:
            spool = default_pg_spool_dir(dsn, schema, table_prefix)
        self.spool_dir = spool


def ledger_from_url(url: str) -> Ledger:
    """A ledger from a URL: ``memory://``, ``sqlite:///costs.db`` (relative),
    ``sqlite:////abs/costs.db`` or ``postgresql://user@host/db[?schema=name]``; the query
    parameter ``spool_dir=/path`` (``spool_dir=off``: none) moves the crash spool."""
    from agenthood_mw.metering._ledger import MemoryLedger

    if not isinstance(url, str):
        raise TypeError("ledger: expected a URL string or a Ledger")
    if url == "memory://":
        return MemoryLedger()
    try:
        if url.startswith("sqlite://"):
            path, spool = split_spool_param(url)
            return SQLiteLedger(sqlite_path_from_url(path), spool_dir=spool)
        if url.startswith(("postgresql://", "postgres://")):
            rest, spool = split_spool_param(url)
            dsn, schema = split_pg_url(rest)
            return PostgresLedger(dsn, schema=schema, spool_dir=spool)
    except ValueError as exc:
        raise ValueError(f"ledger: {exc}") from None
    except sqlite3.Error as exc:  # e.g. the file is not a SQLite database
        raise ValueError(f"ledger: cannot open {url!r}: {exc}") from None
    raise ValueError(
        f"ledger: unsupported URL {redact(url)!r} (memory://, sqlite:///, postgresql://)"
    )
