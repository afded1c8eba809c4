"""Run traces: every step, tool call and model call of a run, stored scoped to its user.

Every public method takes a :class:`MemoryScope`. ``get(scope, run_id)`` of another scope's run
returns ``None`` (it is looked up by ``(scope, run_id)``, never by run id alone) and anything a
backend returns is checked against the scope before it is handed out.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, TypeVar

from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw._core.urls import redact
from agenthood_mw.metering._records import RunRecord
from agenthood_mw.metering._sql import (
    Database,
    PostgresDatabase,
    SQLiteDatabase,
    split_pg_url,
    split_spool_param,
    sqlite_path_from_url,
)

__all__ = [
    "MemoryTraceStore",
    "PostgresTraceStore",
    "SQLiteTraceStore",
    "TraceStore",
    "trace_store_from_url",
]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {t}traces (
  scope_key TEXT NOT NULL,
  run_id TEXT NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  ended_at DOUBLE PRECISION NOT NULL,
  agent TEXT,
  data TEXT NOT NULL,
  PRIMARY KEY (scope_key, run_id)
);
CREATE INDEX IF NOT EXISTS {i}traces_ended ON {t}traces (ended_at);
CREATE INDEX IF NOT EXISTS {i}traces_scope_started ON {t}traces (scope_key, started_at)
"""


_TRACE_COLUMNS = (
    ("scope_key", "text"),
    ("run_id", "text"),
    ("started_at", "float8"),
    ("ended_at", "float8"),
    ("agent", "text"),
    ("data", "text"),
)


def _retention(value: object) -> float | None:
    if value is None:
        return None
    return parse_duration(value, option="retention")


class TraceStore(ABC):
    """Where run traces live. Subclasses implement the ``_`` hooks.

    Args:
        retention: how long traces are kept (``"30d"``, seconds, or ``None`` for ever). Expired
            traces are purged as new ones are written and by :meth:`purge_expired`.
    """

    blocking = True
    _PURGE_EVERY = 300.0

    def __init__(self, *, retention: object = "30d", clock: Callable[[], float] = time.time):
        self.retention = _retention(retention)
        self._clock = clock
        self._last_purge = 0.0

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    @abstractmethod
    def _put(self, runs: Sequence[RunRecord]) -> None: ...

    @abstractmethod
    def _get(self, scope_key: str, run_id: str) -> tuple[str, dict[str, Any]] | None: ...

    @abstractmethod
    def _list(
        self, scope_key: str, limit: int, before: float | None
    ) -> list[tuple[str, dict[str, Any]]]: ...

    @abstractmethod
    def _erase(self, scope_key: str) -> int: ...

    @abstractmethod
    def _purge(self, older_than: float) -> int: ...

    @abstractmethod
    def close_sync(self) -> None: ...

    def write_runs(self, runs: Sequence[RunRecord]) -> None:
        """Store the traces of ``runs`` (each under its own scope); purge expired ones.

        A run id already stored keeps its first trace (a re-written run is ignored).
        """
        self._put(runs)
        self._purge_if_due()

    def write_new_runs(self, runs: Sequence[RunRecord]) -> None:
        """:meth:`write_runs` for runs never written to this store before -- the metering
        recorder's, one per finished meter. A store may skip the duplicate check for them;
        by default this is :meth:`write_runs`."""
        self.write_runs(runs)

    def write_new_run(self, run: RunRecord) -> None:
        """:meth:`write_new_runs` of one run."""
        self.write_new_runs((run,))

    def _purge_if_due(self) -> None:
        if self.retention is not None:
            now = self._clock()
            if now - self._last_purge >= self._PURGE_EVERY:
                self._last_purge = now
                self._purge(now - self.retention)

    async def put(self, scope: MemoryScope, run: RunRecord) -> None:
        """Store the trace of ``run``, which must belong to ``scope``."""
        if require_scope(scope) != run.scope:
            raise PermissionError("the run belongs to another scope")
        await self._call(self.write_runs, [run])

    async def get(self, scope: MemoryScope, run_id: str) -> dict[str, Any] | None:
        """The trace of ``run_id`` if it belongs to ``scope``; ``None`` otherwise."""
        key = require_scope(scope).storage_key
        if not isinstance(run_id, str) or not run_id:
            return None
        found = await self._call(self._get, key, run_id)
        if found is None:
            return None
        owner, data = found
        if owner != key or data.get("runId") != run_id:
            raise RuntimeError("trace store returned a trace of another scope")
        return data

    async def list(
        self, scope: MemoryScope, *, limit: int = 20, before: float | None = None
    ) -> list[dict[str, Any]]:
        """The traces of ``scope``, newest first (``before``: started before this time)."""
        key = require_scope(scope).storage_key
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit: must be a positive int")
        rows = await self._call(self._list, key, min(limit, 1000), before)
        if any(owner != key for owner, _ in rows):
            raise RuntimeError("trace store returned a trace of another scope")
        return [data for _, data in rows]

    async def erase(self, scope: MemoryScope) -> int:
        """Delete every trace of ``scope``; returns how many."""
        return await self._call(self._erase, require_scope(scope).storage_key)

    async def purge_expired(self, *, now: float | None = None) -> int:
        """Operator: delete traces older than the retention period; returns how many."""
        if self.retention is None:
            return 0
        cutoff = (self._clock() if now is None else now) - self.retention
        return await self._call(self._purge, cutoff)

    async def close(self) -> None:
        await self._call(self.close_sync)


class MemoryTraceStore(TraceStore):
    """In-process trace store (``memory://``).

    A write appends the run to a buffer (one atomic ``deque.extend``, no lock, no clock read on
    the request path); the buffer is folded into the table every :attr:`_FOLD_EVERY` runs and
    before every read, erase or purge, so readers always see every run written before the read.
    """

    blocking = False
    _FOLD_EVERY = 256

    def __init__(self, *, retention: object = "30d", clock: Callable[[], float] = time.time):
        super().__init__(retention=retention, clock=clock)
        self._lock = threading.Lock()
        # Runs are kept as records (the trace document is built when read), per scope, in
        # write order; the run-id index of a scope is built when that scope is first read.
        self._data: dict[str, _Bucket] = {}
        self._pending: deque[RunRecord] = deque()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that overrides a write method sees every write that would reach it: the
        # recorder's fast paths then delegate as the base class does.
        base = MemoryTraceStore
        if cls.write_runs is not base.write_runs and cls.write_new_runs is base.write_new_runs:
            cls.write_new_runs = TraceStore.write_new_runs  # type: ignore[method-assign]
        if (
            cls.write_new_runs is not base.write_new_runs
            and cls.write_new_run is base.write_new_run
        ):
            cls.write_new_run = TraceStore.write_new_run  # type: ignore[method-assign]

    def _put(self, runs: Sequence[RunRecord]) -> None:
        """The public write (``write_runs``): a run id already stored is ignored."""
        with self._lock:
            self._fold()
            data = self._data
            for run in runs:
                key = run.scope.storage_key
                bucket = data.get(key)
                if bucket is None:
                    bucket = data[key] = _Bucket()
                bucket.add(run)

    def write_new_runs(self, runs: Sequence[RunRecord]) -> None:
        pending = self._pending
        pending.extend(runs)
        if len(pending) >= self._FOLD_EVERY:
            self._sync()

    def write_new_run(self, run: RunRecord) -> None:
        pending = self._pending
        pending.append(run)
        if len(pending) >= self._FOLD_EVERY:
            self._sync()

    def _sync(self) -> None:
        """Fold buffered writes in, then purge expired traces when due (as a write would)."""
        if self._pending:
            with self._lock:
                self._fold()
            self._purge_if_due()

    def _fold(self) -> None:
        """Move buffered new runs into their scopes' buckets (caller holds the lock).
        ``popleft`` never loses a run appended concurrently: the deque's append and popleft are
        atomic."""
        pending, data = self._pending, self._data
        scope: object = None
        runs: list[RunRecord] = []
        while pending:
            try:
                run = pending.popleft()
            except IndexError:  # pragma: no cover - emptied by another thread
                break
            if run.scope is not scope:  # consecutive runs of one caller share a scope object
                scope = run.scope
                key = run.scope.storage_key
                bucket = data.get(key)
                if bucket is None:
                    bucket = data[key] = _Bucket()
                runs = bucket.runs
            runs.append(run)

    def _get(self, scope_key: str, run_id: str) -> tuple[str, dict[str, Any]] | None:
        self._sync()
        with self._lock:
            self._fold()
            bucket = self._data.get(scope_key)
            found = None if bucket is None else bucket.find(run_id)
        return None if found is None else (found.scope.storage_key, found.trace())

    def _list(
        self, scope_key: str, limit: int, before: float | None
    ) -> list[tuple[str, dict[str, Any]]]:
        self._sync()
        with self._lock:
            self._fold()
            bucket = self._data.get(scope_key)
            items = [] if bucket is None else bucket.unique()
        items = [r for r in items if before is None or r.started_at < before]
        items.sort(key=lambda r: r.started_at, reverse=True)
        return [(r.scope.storage_key, r.trace()) for r in items[:limit]]

    def _erase(self, scope_key: str) -> int:
        with self._lock:
            self._fold()
            bucket = self._data.pop(scope_key, None)
            return 0 if bucket is None else len(bucket.unique())

    def _purge(self, older_than: float) -> int:
        n = 0
        with self._lock:
            self._fold()
            for bucket in self._data.values():
                n += bucket.drop_ended_before(older_than)
        return n

    def close_sync(self) -> None:
        return None


class _Bucket:
    """One scope's runs in write order, indexed by run id on the first read.

    New runs (the recorder's) are appended without a lookup; :meth:`add` (a public write,
    which may repeat a run) checks the index first. Reads go through the index, which keeps the
    first write of a run id, so a repeat that still slips in (a run written through both paths
    at once) is never shown twice.
    """

    __slots__ = ("index", "indexed", "runs")

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []
        self.index: dict[str, RunRecord] = {}
        self.indexed = 0

    def _catch_up(self) -> None:
        runs, index = self.runs, self.index
        for i in range(self.indexed, len(runs)):
            run = runs[i]
            index.setdefault(run.run_id, run)
        self.indexed = len(runs)

    def add(self, run: RunRecord) -> None:
        """Store ``run`` unless its run id is already stored."""
        self._catch_up()
        if run.run_id not in self.index:
            self.runs.append(run)
            self.index[run.run_id] = run
            self.indexed = len(self.runs)

    def find(self, run_id: str) -> RunRecord | None:
        self._catch_up()
        return self.index.get(run_id)

    def unique(self) -> list[RunRecord]:
        """Every stored run once (its first write), in write order."""
        self._catch_up()
        return list(self.index.values())

    def drop_ended_before(self, cutoff: float) -> int:
        """Forget every run id with a write that ended before ``cutoff``; returns how many.
        The index is rebuilt by the next read."""
        expired = {r.run_id for r in self.runs if r.ended_at < cutoff}
        if expired:
            self.runs = [r for r in self.runs if r.run_id not in expired]
            self.index = {}
            self.indexed = 0
        return len(expired)


_ZERO_TOTALS = (0, 0, 0, 0, 0, 0, 0, 0)
_EMPTY_TAIL = (
    ',"stopReason":null,"error":null,"totals":{"inputTokens":0,"outputTokens":0,'
    '"cachedInputTokens":0,"reasoningTokens":0,"totalCost":"0","steps":0,"toolCalls":0,'
    '"modelCalls":0},"events":[]}'
)


def _trace_json(run: RunRecord, heads: dict[tuple[str, str | None, str | None], str]) -> str:
    """``run.trace_json()``, the same text; a run that recorded nothing (most requests) is
    assembled from cached pieces (runs the writer thread, which holds the GIL meanwhile)."""
    run_id, started, ended, status = run.run_id, run.started_at, run.ended_at, run.status
    if (
        run.events
        or run.stop_reason is not None
        or run.error is not None
        or run.totals != _ZERO_TOTALS
        or type(started) is not float
        or type(ended) is not float
        or not (math.isfinite(started) and math.isfinite(ended))
        or not (status is None or type(status) is int)
        or not (type(run_id) is str and run_id.isascii() and run_id.isalnum())
    ):
        return run.trace_json()
    key = (run.scope.label, run.agent, run.path)
    head = heads.get(key)
    if head is None:
        head = heads[key] = (
            f'","memoryScope":{_quote(key[0])},"agent":{_text(key[1])},'
            f'"path":{_text(key[2])},"startedAt":'
        )
    return (
        f'{{"runId":"{run_id}{head}{started!r},"endedAt":{ended!r},'
        f'"status":{"null" if status is None else status}{_EMPTY_TAIL}'
    )


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(str(value))


class _SQLTraceStore(TraceStore):
    def __init__(
        self, db: Database, *, retention: object, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(retention=retention, clock=clock)
        self._db = db
        self._closed = False
        # (scope label, agent, path) -> the JSON text between the run id and ``startedAt``.
        self._heads: dict[tuple[str, str | None, str | None], str] = {}
        db.script(_SCHEMA)

    def _put(self, runs: Sequence[RunRecord]) -> None:
        heads = self._heads
        if len(heads) > 4096:
            heads.clear()
        rows = [
            (
                r.scope.storage_key,
                r.run_id,
                r.started_at,
                r.ended_at,
                r.agent,
                _trace_json(r, heads),
            )
            for r in runs
        ]
        with self._db.transaction() as tx:
            tx.insert("traces", _TRACE_COLUMNS, rows)

    def _get(self, scope_key: str, run_id: str) -> tuple[str, dict[str, Any]] | None:
        rows = self._db.query(
            "SELECT scope_key, data FROM {t}traces WHERE scope_key = ? AND run_id = ?",
            (scope_key, run_id),
        )
        return None if not rows else (rows[0][0], json.loads(rows[0][1]))

    def _list(
        self, scope_key: str, limit: int, before: float | None
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = self._db.query(
            "SELECT scope_key, data FROM {t}traces WHERE scope_key = ? AND started_at < ? "
            "ORDER BY started_at DESC LIMIT ?",
            (scope_key, 1e18 if before is None else before, limit),
        )
        return [(r[0], json.loads(r[1])) for r in rows]

    def _erase(self, scope_key: str) -> int:
        return self._db.write([("DELETE FROM {t}traces WHERE scope_key = ?", [(scope_key,)])])[0][0]

    def _purge(self, older_than: float) -> int:
        return self._db.write([("DELETE FROM {t}traces WHERE ended_at < ?", [(older_than,)])])[0][0]

    def close_sync(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()


class SQLiteTraceStore(_SQLTraceStore):
    """Traces in a SQLite file (table ``agenthood_traces``)."""

    def __init__(
        self,
        path: str,
        *,
        retention: object = "30d",
        table_prefix: str = "agenthood_",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            SQLiteDatabase(path, table_prefix=table_prefix), retention=retention, clock=clock
        )


class PostgresTraceStore(_SQLTraceStore):
    """Traces in PostgreSQL (table ``agenthood_traces`` in ``schema``)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        retention: object = "30d",
        table_prefix: str = "agenthood_",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            PostgresDatabase(dsn, schema=schema, table_prefix=table_prefix),
            retention=retention,
            clock=clock,
        )


def trace_store_from_url(url: str, *, retention: object = "30d") -> TraceStore:
    """``memory://``, ``sqlite:///traces.db`` or ``postgresql://...[?schema=name]``."""
    if not isinstance(url, str):
        raise TypeError("traces: expected a URL string or a TraceStore")
    if url == "memory://":
        return MemoryTraceStore(retention=retention)
    url = split_spool_param(url)[0]  # a ledger URL's spool option: the recorder's, not ours
    try:
        if url.startswith("sqlite://"):
            return SQLiteTraceStore(sqlite_path_from_url(url), retention=retention)
        if url.startswith(("postgresql://", "postgres://")):
            dsn, schema = split_pg_url(url)
            return PostgresTraceStore(dsn, schema=schema, retention=retention)
    except ValueError as exc:
        raise ValueError(f"traces: {exc}") from None
    except sqlite3.Error as exc:  # e.g. the file is not a SQLite database
        raise ValueError(f"traces: cannot open {url!r}: {exc}") from None
    raise ValueError(
        f"traces: unsupported URL {redact(url)!r} (memory://, sqlite:///, postgresql://)"
    )
