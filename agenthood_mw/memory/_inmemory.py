"""``InMemoryBackend``: a bounded, per-process backend for development and tests (cachetools)."""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable, Sequence

from cachetools import LRUCache

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.memory._base import MemoryBackend
from agenthood_mw.memory._errors import MemoryFullError
from agenthood_mw.memory._records import Event, Record, Tier

__all__ = ["InMemoryBackend"]

# value_json, search text, updated_at, expires_at
_Entry = tuple[str, str, float, float | None]


def _EVENT_KEY(e: tuple[float, str, str]) -> tuple[float, str]:
    return (e[0], e[1])


class _ScopeData:
    __slots__ = ("events", "kv", "order")

    def __init__(self) -> None:
        self.kv: dict[Tier, dict[str, _Entry]] = {"facts": {}, "project": {}}
        self.order: dict[Tier, list[str]] = {"facts": [], "project": []}
        # (timestamp, id, data_json), ascending
        self.events: list[tuple[float, str, str]] = []


def _positive(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} must be an int")
    if value < 1:
        raise ValueError(f"{option} must be at least 1")
    return value


class InMemoryBackend(MemoryBackend):
    """Everything in this process's memory; lost on exit. One dict per scope, so
    :meth:`erase` is O(1).

    Bounded: at most ``max_scopes`` scopes (the least recently used scope is evicted, as in
    any cache), ``max_records`` facts + documents per scope (a put beyond raises
    :class:`MemoryFullError`) and ``max_events`` events per scope (the oldest are dropped).
    """

    def __init__(
        self,
        *,
        max_scopes: int = 10_000,
        max_records: int = 10_000,
        max_events: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self._scopes: LRUCache[str, _ScopeData] = LRUCache(_positive(max_scopes, "max_scopes"))
        self._max_records = _positive(max_records, "max_records")
        self._max_events = _positive(max_events, "max_events")
        self._lock = threading.Lock()

    def _data(self, scope: MemoryScope, create: bool) -> _ScopeData | None:
        data = self._scopes.get(scope.storage_key)
        if data is None and create:
            data = self._scopes[scope.storage_key] = _ScopeData()
        return data

    @staticmethod
    def _record(sk: str, tier: Tier, key: str, entry: _Entry) -> Record:
        return Record(sk, tier, key, json.loads(entry[0]), entry[2], entry[3])

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
        entry: _Entry = (value_json, search, now, expires_at)
        with self._lock:
            data = self._data(scope, True)
            assert data is not None
            kv = data.kv[tier]
            if key not in kv:
                if len(data.kv["facts"]) + len(data.kv["project"]) >= self._max_records:
                    self._purge(data, now)
                    if len(data.kv["facts"]) + len(data.kv["project"]) >= self._max_records:
                        raise MemoryFullError(
                            f"scope holds {self._max_records} records (max_records); "
                            "delete some or raise the limit"
                        )
                bisect.insort(data.order[tier], key)
            kv[key] = entry
        return self._record(scope.storage_key, tier, key, entry)

    @staticmethod
    def _purge(data: _ScopeData, now: float) -> None:
        for tier, kv in data.kv.items():
            dead = [k for k, e in kv.items() if e[3] is not None and e[3] <= now]
            for k in dead:
                del kv[k]
            if dead:
                data.order[tier] = sorted(kv)

    async def _get(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> Record | None:
        with self._lock:
            data = self._data(scope, False)
            entry = None if data is None else data.kv[tier].get(key)
        if entry is None or (entry[3] is not None and entry[3] <= now):
            return None
        return self._record(scope.storage_key, tier, key, entry)

    async def _delete(self, scope: MemoryScope, tier: Tier, key: str, now: float) -> bool:
        with self._lock:
            data = self._data(scope, False)
            if data is None or key not in data.kv[tier]:
                return False
            entry = data.kv[tier].pop(key)
            order = data.order[tier]
            del order[bisect.bisect_left(order, key)]
        return entry[3] is None or entry[3] > now

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
        sk = scope.storage_key
        out: list[Record] = []
        with self._lock:
            data = self._data(scope, False)
            if data is None:
                return out
            order, kv = data.order[tier], data.kv[tier]
            i = bisect.bisect_right(order, after) if after is not None else 0
            i = max(i, bisect.bisect_left(order, prefix))
            while i < len(order) and len(out) < limit:
                key = order[i]
                i += 1
                if upper is not None and key >= upper:
                    break
                entry = kv[key]
                if entry[3] is None or entry[3] > now:
                    out.append(self._record(sk, tier, key, entry))
        return out

    async def _search(
        self, scope: MemoryScope, tier: Tier, terms: tuple[str, ...], limit: int, now: float
    ) -> Sequence[Record]:
        sk = scope.storage_key
        out: list[Record] = []
        with self._lock:
            data = self._data(scope, False)
            if data is None:
                return out
            kv = data.kv[tier]
            for key in data.order[tier]:
                entry = kv[key]
                if (entry[3] is None or entry[3] > now) and all(t in entry[1] for t in terms):
                    out.append(self._record(sk, tier, key, entry))
                    if len(out) >= limit:
                        break
        return out

    async def _append_event(
        self, scope: MemoryScope, event_id: str, timestamp: float, data_json: str
    ) -> Event:
        item = (timestamp, event_id, data_json)
        with self._lock:
            data = self._data(scope, True)
            assert data is not None
            events = data.events
            if not events or _EVENT_KEY(events[-1]) < (timestamp, event_id):
                events.append(item)
            else:
                bisect.insort(events, item, key=_EVENT_KEY)
            if len(events) > self._max_events:
                del events[: len(events) - self._max_events]
        return Event(scope.storage_key, event_id, timestamp, json.loads(data_json))

    async def _list_events(
        self,
        scope: MemoryScope,
        since: float | None,
        until: float | None,
        before: tuple[float, str] | None,
        limit: int,
    ) -> Sequence[Event]:
        sk = scope.storage_key
        out: list[Event] = []
        with self._lock:
            data = self._data(scope, False)
            if data is None:
                return out
            events = data.events
            hi = len(events)
            if until is not None:
                hi = bisect.bisect_left(events, (until, ""), key=_EVENT_KEY)
            if before is not None:
                hi = min(hi, bisect.bisect_left(events, before, key=_EVENT_KEY))
            lo = 0 if since is None else bisect.bisect_left(events, (since, ""), key=_EVENT_KEY)
            for i in range(hi - 1, max(lo, hi - limit) - 1, -1):
                ts, event_id, data_json = events[i]
                out.append(Event(sk, event_id, ts, json.loads(data_json)))
        return out

    async def _erase(self, scope: MemoryScope) -> int:
        with self._lock:
            data = self._scopes.pop(scope.storage_key, None)
        if data is None:
            return 0
        return len(data.kv["facts"]) + len(data.kv["project"]) + len(data.events)
