"""SQLite and PostgreSQL ledgers (one schema, one code path, two adapters)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from agenthood_mw._core.spikes import History, day_of
from agenthood_mw._core.urls import redact
from agenthood_mw.metering._ledger import Ledger, Per, Spend, _spend_row
from agenthood_mw.metering._records import RunRecord, UsageEvent
from agenthood_mw.metering._sql import (
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    split_pg_url,
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

_INSERT_EVENT: Final = (
    "INSERT INTO {t}usage (scope_key, event_key, run_id, ts, day, tenant, agent, model, "
    "provider, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, "
    "cache_creation_input_tokens, cost_nanos) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT DO NOTHING"
)
_INSERT_RUN: Final = (
    "INSERT INTO {t}runs (scope_key, run_id, tenant, agent, path, started_at, ended_at, status, "
    "stop_reason, error, input_tokens, output_tokens, cost_nanos, steps, tool_calls) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
)
_EVENT_COLS: Final = (
    "event_key, run_id, ts, model, provider, input_tokens, output_tokens, cached_input_tokens, "
    "reasoning_tokens, cache_creation_input_tokens, cost_nanos"
)


class SQLLedger(Ledger):
    """A ledger over a :class:`~agenthood_mw.metering._sql.Database` adapter."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._closed = False
        db.script(_SCHEMA)

    def write_runs(self, runs: Sequence[RunRecord]) -> list[int]:
        events: list[tuple[Any, ...]] = []
        owners: list[int] = []
        run_rows = []
        for i, run in enumerate(runs):
            key = run.scope.storage_key
            t = run.totals
            run_rows.append(
                (key, run.run_id, run.tenant, run.agent, run.path, run.started_at,
                 run.ended_at, run.status, run.stop_reason, run.error, t.input_tokens,
                 t.output_tokens, t.cost_nanos, t.steps, t.tool_calls)
            )  # fmt: skip
            for ev in run.usage:
                owners.append(i)
                events.append(
                    (key, ev.event_key, ev.run_id, ev.ts, day_of(ev.ts), run.tenant, run.agent,
                     ev.model, ev.provider, ev.input_tokens, ev.output_tokens,
                     ev.cached_input_tokens, ev.reasoning_tokens,
                     ev.cache_creation_input_tokens, ev.cost_nanos)
                )  # fmt: skip
        counts = self._db.write([(_INSERT_EVENT, events)], bulk=[(_INSERT_RUN, run_rows)])[0]
        new = [0] * len(runs)
        for owner, row, inserted in zip(owners, events, counts, strict=True):
            if inserted > 0:
                new[owner] += row[-1]
        return new

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


class SQLiteLedger(SQLLedger):
    """A ledger in a SQLite file (``sqlite:///costs.db``); WAL mode, safe across threads."""

    def __init__(self, path: str, *, table_prefix: str = "agenthood_") -> None:
        super().__init__(SQLiteDatabase(path, table_prefix=table_prefix))


class PostgresLedger(SQLLedger):
    """A ledger in PostgreSQL (``postgresql://...``) through a psycopg 3 connection pool.

    Args:
        dsn: libpq connection string or URL.
        schema: schema holding the tables (must exist); default: the search path.
        table_prefix: prefix of the table names.
    """

    def __init__(
        self, dsn: str, *, schema: str | None = None, table_prefix: str = "agenthood_"
    ) -> None:
        super().__init__(PostgresDatabase(dsn, schema=schema, table_prefix=table_prefix))


def ledger_from_url(url: str) -> Ledger:
    """A ledger from a URL: ``memory://``, ``sqlite:///costs.db`` (relative),
    ``sqlite:////abs/costs.db`` or ``postgresql://user@host/db[?schema=name]``."""
    from agenthood_mw.metering._ledger import MemoryLedger

    if not isinstance(url, str):
        raise TypeError("ledger: expected a URL string or a Ledger")
    if url == "memory://":
        return MemoryLedger()
    try:
        if url.startswith("sqlite://"):
            return SQLiteLedger(sqlite_path_from_url(url))
        if url.startswith(("postgresql://", "postgres://")):
            dsn, schema = split_pg_url(url)
            return PostgresLedger(dsn, schema=schema)
    except ValueError as exc:
        raise ValueError(f"ledger: {exc}") from None
    except sqlite3.Error as exc:  # e.g. the file is not a SQLite database
        raise ValueError(f"ledger: cannot open {url!r}: {exc}") from None
    raise ValueError(
        f"ledger: unsupported URL {redact(url)!r} (memory://, sqlite:///, postgresql://)"
    )
