"""Ledgers: where usage events and run records are kept. Base class and the memory ledger.

Every read of one user's data takes a :class:`MemoryScope`; the only cross-user reads are the
explicit operator report methods (:meth:`Ledger.report`, :meth:`Ledger.daily_spend`) used by
:class:`~agenthood_mw.metering.CostEstimator`. Writes are idempotent: a usage event is keyed by
``(scope, event_key)`` (the ``idempotency_key`` when given) and a run by ``(scope, run_id)``.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

from agenthood_mw._core.pricing import nanos_to_decimal
from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw._core.spikes import History, day_of
from agenthood_mw.metering._records import KEPT, NEW, REPLAY, RunRecord, UsageEvent, new_nanos

__all__ = ["Ledger", "MemoryLedger", "Per", "Spend", "check_per", "store", "subject_of"]

Per = Literal["user", "agent", "tenant"]
T = TypeVar("T")


def check_per(per: object, *, option: str = "per") -> Per:
    if per not in ("user", "agent", "tenant"):
        raise ValueError(f"{option}: must be 'user', 'agent' or 'tenant', got {per!r}")
    return per


def subject_of(per: Per, scope: MemoryScope, agent: str | None) -> str | None:
    """The ledger subject of a run for ``per`` (a user is keyed by its scope's storage key)."""
    if per == "user":
        return scope.storage_key
    if per == "agent":
        return agent
    return scope.tenant


@dataclass(frozen=True, slots=True)
class Spend:
    """Aggregated spend of one subject over a period.

    ``subject`` is the agent or tenant name, or the user's scope label; ``scope`` is set for
    ``per="user"`` rows.
    """

    subject: str
    cost_nanos: int
    input_tokens: int
    output_tokens: int
    calls: int
    scope: MemoryScope | None = None

    @property
    def cost(self) -> Decimal:
        return nanos_to_decimal(self.cost_nanos)


def _spend_row(per: Per, key: str, nanos: int, inp: int, out: int, calls: int) -> Spend:
    if per == "user":
        scope = MemoryScope.from_storage_key(key)
        return Spend(scope.label, nanos, inp, out, calls, scope)
    return Spend(key, nanos, inp, out, calls)


class Ledger(ABC):
    """Storage of usage events and run records.

    Subclasses implement the synchronous ``_``-prefixed hooks; the public async methods run
    them (off the event loop for I/O-bound ledgers) and validate scopes.
    """

    #: Whether hooks do blocking I/O (then async methods run them in a worker thread).
    blocking = True
    #: Directory of the crash spool of the metering recorder writing to this ledger (a run is
    #: appended there when it is submitted and replayed at the next start if the process dies
    #: before the run is in the database); ``None``: no spool (an in-process ledger).
    spool_dir: str | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # -- hooks ------------------------------------------------------------------------------
    def write_usage(self, runs: Sequence[RunRecord]) -> list[tuple[int, ...]]:
        """Store runs and their usage events in one transaction; return, per run, one status
        per usage event: ``NEW`` (stored now), ``KEPT`` (already stored for this run: a
        re-write) or ``REPLAY`` (its key is stored for another run, which counts it).

        Idempotent: writing a run again changes nothing. Within one call, the first run
        holding a key is the one it is counted for. The storage hook a ledger implements
        (a ledger implementing only the older :meth:`write_runs` still works: its events all
        count as ``NEW``, so replays are not taken out of its traces).
        """
        if not _writes_through_write_runs(type(self)):
            raise NotImplementedError(f"{type(self).__name__} must implement write_usage()")
        self.write_runs(runs)
        return [(NEW,) * len(run.usage) for run in runs]

    def write_runs(self, runs: Sequence[RunRecord]) -> list[int]:
        """Store runs and their events; return, per run, the nano-dollars newly recorded
        (events already present -- replays of an idempotency key, re-writes -- count 0)."""
        statuses = self.write_usage(runs)
        _captured.statuses = statuses  # for :func:`store` when a subclass wraps this method
        return [new_nanos(r, st) for r, st in zip(runs, statuses, strict=True)]

    @abstractmethod
    def spend_between(self, per: Per, subject: str, since: float, until: float) -> int:
        """Nano-dollars spent by ``subject`` with ``since <= ts < until`` (budget loading)."""

    @abstractmethod
    def history(self, per: Per, subject: str, today: int, days: int) -> History:
        """Today's spend, the previous ``days`` full days (oldest first) and the first day."""

    @abstractmethod
    def claim_alert(self, kind: str, subject: str, day: int, ts: float) -> bool:
        """Record that ``subject`` alerted on ``day``; False when it already had."""

    @abstractmethod
    def _user_events(
        self, scope_key: str, since: float | None, until: float | None, limit: int
    ) -> list[UsageEvent]: ...

    @abstractmethod
    def _report(self, per: Per, since: float | None, until: float | None) -> list[Spend]: ...

    @abstractmethod
    def _erase(self, scope_key: str) -> int: ...

    @abstractmethod
    def close_sync(self) -> None:
        """Release connections (idempotent)."""

    # -- public API -------------------------------------------------------------------------
    async def usage(
        self,
        scope: MemoryScope,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageEvent]:
        """Usage events of ``scope`` (newest first)."""
        key = require_scope(scope).storage_key
        return await self._call(self._user_events, key, since, until, limit)

    async def spend(
        self, scope: MemoryScope, *, since: float | None = None, until: float | None = None
    ) -> Decimal:
        """Total spend of ``scope``'s user in ``[since, until)`` (all time by default)."""
        key = require_scope(scope).storage_key
        nanos = await self._call(
            self.spend_between, "user", key, since or 0.0, until or float("inf")
        )
        return nanos_to_decimal(nanos)

    async def report(
        self, per: Per, *, since: float | None = None, until: float | None = None
    ) -> list[Spend]:
        """Operator report: spend per user, agent or tenant, highest first."""
        return await self._call(self._report, check_per(per), since, until)

    async def daily_spend(self, per: Per, subject: str | MemoryScope, *, today: int) -> History:
        """Operator report: the spike-rule history of one subject (a scope for users)."""
        per = check_per(per)
        key = require_scope(subject).storage_key if per == "user" else str(subject)
        return await self._call(self.history, per, key, today, 7)

    async def erase(self, scope: MemoryScope) -> int:
        """Delete every usage event and run record of ``scope``; returns the events deleted."""
        return await self._call(self._erase, require_scope(scope).storage_key)

    async def close(self) -> None:
        await self._call(self.close_sync)


_captured = threading.local()
_LEGACY: dict[type[Ledger], bool] = {}


def _writes_through_write_runs(cls: type[Ledger]) -> bool:
    """Whether ``cls`` overrides :meth:`Ledger.write_runs` below its nearest ``write_usage``
    (a subclass wrapping the older hook, or a ledger implementing only that one)."""
    found = _LEGACY.get(cls)
    if found is None:
        found = False
        for klass in cls.__mro__:
            if klass is Ledger:
                break
            if "write_usage" in klass.__dict__:
                break
            if "write_runs" in klass.__dict__:
                found = True
                break
        _LEGACY[cls] = found
    return found


def store(ledger: Ledger, runs: Sequence[RunRecord]) -> list[tuple[int, ...]]:
    """Write ``runs`` through ``ledger``'s most specific write hook; the status of each usage
    event (see :meth:`Ledger.write_usage`). The metering recorder writes through this, so a
    subclass that wraps ``write_runs`` (e.g. to delay or observe writes) sees every write."""
    if not _writes_through_write_runs(type(ledger)):
        return ledger.write_usage(runs)
    _captured.statuses = None
    ledger.write_runs(runs)
    statuses: list[tuple[int, ...]] | None = _captured.statuses
    _captured.statuses = None
    if statuses is None or len(statuses) != len(runs):  # it did not reach Ledger.write_runs
        return [(NEW,) * len(run.usage) for run in runs]
    return statuses


class MemoryLedger(Ledger):
    """An in-process ledger (``memory://``): for tests, development and single-process apps."""

    blocking = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], tuple[UsageEvent, str | None, str | None]] = {}
        # Only usage events are kept (run records live in the trace store).
        self._daily: dict[tuple[str, str, int], int] = {}
        self._first: dict[tuple[str, str], int] = {}
        self._alerts: set[tuple[str, str, int]] = set()
        # (per, subject) -> {event key: (ts, nanos)}: budget seeds read one subject's events.
        self._by_subject: dict[tuple[str, str], dict[tuple[str, str], tuple[float, int]]] = {}

    def write_usage(self, runs: Sequence[RunRecord]) -> list[tuple[int, ...]]:
        if len(runs) == 1 and not runs[0].usage:
            return [()]  # the common request that called no model: nothing to store
        with self._lock:
            return [self._store(run) if run.usage else () for run in runs]

    def _store(self, run: RunRecord) -> tuple[int, ...]:
        """Store one run's usage events (the caller holds the lock)."""
        events, daily, first, index = self._events, self._daily, self._first, self._by_subject
        key = run.scope.storage_key
        agent, tenant = run.agent, run.tenant
        subjects = [("user", key)]
        if agent is not None:
            subjects.append(("agent", agent))
        if tenant is not None:
            subjects.append(("tenant", tenant))
        statuses = []
        for ev in run.usage:
            ek = (key, ev.event_key)
            held = events.get(ek)
            if held is not None:
                statuses.append(KEPT if held[0].run_id == run.run_id else REPLAY)
                continue
            statuses.append(NEW)
            events[ek] = (ev, agent, tenant)
            nanos, ts = ev.cost_nanos, ev.ts
            day = day_of(ts)
            for sk in subjects:
                dk = (sk[0], sk[1], day)
                daily[dk] = daily.get(dk, 0) + nanos
                if first.get(sk, day) >= day:
                    first[sk] = day
                bucket = index.get(sk)
                if bucket is None:
                    bucket = index[sk] = {}
                bucket[ek] = (ts, nanos)
        return tuple(statuses)

    def spend_between(self, per: Per, subject: str, since: float, until: float) -> int:
        with self._lock:
            index = self._by_subject.get((per, subject))
            if not index:
                return 0
            return sum(n for ts, n in index.values() if since <= ts < until)

    def history(self, per: Per, subject: str, today: int, days: int) -> History:
        with self._lock:
            prev = tuple(self._daily.get((per, subject, d), 0) for d in range(today - days, today))
            return History(
                self._daily.get((per, subject, today), 0), prev, self._first.get((per, subject))
            )

    def claim_alert(self, kind: str, subject: str, day: int, ts: float) -> bool:
        with self._lock:
            if (kind, subject, day) in self._alerts:
                return False
            self._alerts.add((kind, subject, day))
            return True

    def _user_events(
        self, scope_key: str, since: float | None, until: float | None, limit: int
    ) -> list[UsageEvent]:
        lo, hi = since or 0.0, until or float("inf")
        with self._lock:
            index = self._by_subject.get(("user", scope_key), {})
            rows = [self._events[ek][0] for ek, (ts, _n) in index.items() if lo <= ts < hi]
        rows.sort(key=lambda e: e.ts, reverse=True)
        return rows[:limit]

    def _report(self, per: Per, since: float | None, until: float | None) -> list[Spend]:
        lo, hi = since or 0.0, until or float("inf")
        acc: dict[str, list[int]] = {}
        with self._lock:
            for (key, _), (ev, agent, tenant) in self._events.items():
                if not lo <= ev.ts < hi:
                    continue
                subject = key if per == "user" else (agent if per == "agent" else tenant)
                if subject is None:
                    continue
                a = acc.setdefault(subject, [0, 0, 0, 0])
                a[0] += ev.cost_nanos
                a[1] += ev.input_tokens
                a[2] += ev.output_tokens
                a[3] += 1
        rows = [_spend_row(per, k, *v) for k, v in acc.items()]
        rows.sort(key=lambda r: (-r.cost_nanos, r.subject))
        return rows

    def _erase(self, scope_key: str) -> int:
        with self._lock:
            keys = list(self._by_subject.pop(("user", scope_key), {}))
            for k in keys:
                ev, agent, tenant = self._events.pop(k)
                for dk in (("agent", agent, day_of(ev.ts)), ("tenant", tenant, day_of(ev.ts))):
                    if dk[1] is not None and dk in self._daily:
                        self._daily[dk] -= ev.cost_nanos
                    if dk[1] is not None:
                        self._by_subject.get((dk[0], dk[1]), {}).pop(k, None)
            for dk in [k for k in self._daily if k[0] == "user" and k[1] == scope_key]:
                del self._daily[dk]
            self._first.pop(("user", scope_key), None)
            return len(keys)

    def close_sync(self) -> None:
        return None
