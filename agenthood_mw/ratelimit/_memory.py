"""In-process storage for the ``gcra`` strategy: GCRA + moving-window log, bounded.

No lock: with asyncio a hit never awaits, so it runs to completion. The WSGI shell (threads)
goes through :meth:`MemoryGCRA.hit_sync`, which takes a lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from agenthood_mw._core.gcra import (
    Policy,
    RateLimitDecision,
    WindowState,
    admit,
    commit,
    evaluate,
)

__all__ = ["DEFAULT_MAX_KEYS", "MemoryGCRA"]

#: Default bound on the number of keys kept (least recently admitted are dropped first).
DEFAULT_MAX_KEYS = 1_000_000
_SWEEP = 16  # expired entries dropped every 4th admission (amortised, never a long pause)

Item = tuple[Policy, str, int]


class _State(WindowState):
    __slots__ = ("expires",)

    def __init__(self) -> None:
        super().__init__()
        self.expires = 0.0


class MemoryGCRA:
    """Per-process GCRA + moving-window state keyed by string.

    Entries are kept in order of their last admission; an entry whose ``ttl`` has passed is
    equivalent to a fresh key and is dropped (amortised over admissions). ``max_keys`` bounds the
    table: beyond it the least recently admitted key is forgotten.
    Up to 16 expired entries are dropped every 4th admission.
    """

    __slots__ = ("_clock", "_data", "_lock", "_ops", "max_keys")

    def __init__(
        self, *, clock: Callable[[], float] | None = None, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        self._clock = clock or time.monotonic
        self._data: OrderedDict[str, _State] = OrderedDict()
        self._lock = threading.Lock()
        self._ops = 0
        self.max_keys = max_keys

    def __len__(self) -> int:
        return len(self._data)

    def hit_one(self, policy: Policy, key: str, cost: int) -> RateLimitDecision:
        """Decide one rule's request (the common case, without list building)."""
        now = self._clock()
        data = self._data
        state = data.get(key)
        if state is None:
            state = _State()
        decision = admit(policy, state, now, cost)
        if decision.allowed:
            self._keep(key, state, now, policy)
        return decision

    def hit(self, items: Sequence[Item]) -> list[RateLimitDecision]:
        """Decide all ``items`` at once: every rule admits and is counted, or none is."""
        now = self._clock()
        data = self._data
        if len(items) == 1:
            return [self.hit_one(*items[0])]
        states = []
        outcomes = []
        for policy, key, cost in items:
            state = data.get(key) or _State()
            states.append(state)
            outcomes.append(evaluate(policy, state, now, cost))
        if all(o.allowed for o in outcomes):
            for (policy, key, cost), state in zip(items, states, strict=True):
                self._store(key, state, now, cost, policy)
            return outcomes
        # Refused: nothing is counted; rules that would have admitted report their state as is.
        return [
            o if not o.allowed else evaluate(p, s, now, 0)._replace(allowed=False)
            for (p, _k, _c), s, o in zip(items, states, outcomes, strict=True)
        ]

    def hit_sync(self, items: Sequence[Item]) -> list[RateLimitDecision]:
        """:meth:`hit` for threads (WSGI)."""
        with self._lock:
            return self.hit(items)

    def _store(self, key: str, state: _State, now: float, cost: int, policy: Policy) -> None:
        commit(policy, state, now, cost)
        self._keep(key, state, now, policy)

    def _keep(self, key: str, state: _State, now: float, policy: Policy) -> None:
        """Mark ``state`` (already committed) as just admitted under ``key``."""
        state.expires = now + policy.ttl
        data = self._data
        if key in data:
            data.move_to_end(key)
        else:
            data[key] = state
            if len(data) > self.max_keys:
                data.popitem(last=False)
        # Every few admissions, drop expired entries from the least recently admitted end.
        self._ops += 1
        if not self._ops & 3 and next(iter(data.values())).expires <= now:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        data = self._data
        for _ in range(_SWEEP):
            if next(iter(data.values())).expires > now:
                break
            data.popitem(last=False)

    def clear(self) -> None:
        """Forget every key."""
        self._data.clear()
