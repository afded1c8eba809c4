"""Hard spend budgets: windows, reservations, reconciliation. Pure state, injected clock values.

A request is admitted when, for every budget that applies to it, ``committed + reserved`` is
still below the limit; it then reserves ``reserve`` nano-dollars. At the end the reservation is
replaced by the actual cost (reconcile) or dropped (release). Reservations expire after ``ttl``
seconds so a request that never finished cannot hold budget forever. Because admission needs
headroom left and each in-flight request holds a reservation, concurrent requests whose cost
stays within their reservation overshoot the limit by less than one reservation.

Windows are fixed and aligned to the Unix epoch in UTC: ``"1d"`` resets at 00:00 UTC, ``"1h"``
on the hour, ``"30d"`` every 30 days counted from 1970-01-01.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "PER_KINDS",
    "Admission",
    "BudgetBook",
    "BudgetRule",
    "Hold",
    "Refusal",
    "window_bounds",
]

PerKind = Literal["user", "agent", "tenant"]
PER_KINDS: Final = ("user", "agent", "tenant")


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """One hard budget: ``limit`` nano-dollars per ``window`` seconds per subject of ``per``."""

    per: PerKind
    limit: int
    window: float
    reserve: int
    index: int = 0


def window_bounds(window: float, now: float) -> tuple[float, float]:
    """``(start, end)`` of the epoch-aligned window containing ``now``."""
    start = math.floor(now / window) * window
    return start, start + window


@dataclass(slots=True)
class _Account:
    committed: int = 0
    holds: dict[int | str, tuple[int, float]] = field(
        default_factory=dict
    )  # id -> (amount, expiry)

    def reserved(self, now: float) -> int:
        expired = [h for h, (_, exp) in self.holds.items() if exp <= now]
        for h in expired:
            del self.holds[h]
        return sum(a for a, _ in self.holds.values())


@dataclass(frozen=True, slots=True)
class Hold:
    """One reservation held by an admitted request on one budget."""

    rule: BudgetRule
    subject: str
    window_start: float
    hold_id: int | str


@dataclass(frozen=True, slots=True)
class Admission:
    """The request may run; it holds these reservations."""

    holds: tuple[Hold, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The request must be refused before it runs."""

    rule: BudgetRule
    subject: str
    retry_after: float
    spent: int


AccountKey = tuple[int, str, float]


class BudgetBook:
    """Committed spend and live reservations of every (budget, subject, window).

    Not thread-safe by itself: the caller serialises calls (the metering engine holds a lock).
    ``needs_load`` / ``load`` let the caller seed a window's committed spend from the ledger
    the first time it is seen (after a restart).
    """

    def __init__(self, rules: Sequence[BudgetRule], *, ttl: float) -> None:
        self.rules = tuple(rules)
        self.ttl = ttl
        self._accounts: dict[AccountKey, _Account] = {}
        self._ids = itertools.count(1)

    def _key(self, rule: BudgetRule, subject: str, now: float) -> AccountKey:
        return (rule.index, subject, window_bounds(rule.window, now)[0])

    def missing(self, subjects: dict[str, str | None], now: float) -> list[tuple[BudgetRule, str]]:
        """Budgets whose current window was never loaded, as ``(rule, subject)`` pairs."""
        out = []
        for rule in self.rules:
            subject = subjects.get(rule.per)
            if subject is not None and self._key(rule, subject, now) not in self._accounts:
                out.append((rule, subject))
        return out

    def load(self, rule: BudgetRule, subject: str, now: float, committed: int) -> None:
        """Seed the committed spend of the window containing ``now`` (first load only)."""
        self._accounts.setdefault(self._key(rule, subject, now), _Account(committed=committed))

    def _gc(self, now: float) -> None:
        # Forget windows that ended more than one ttl ago and hold nothing.
        dead = [
            k
            for k, acc in self._accounts.items()
            if k[2] + self.rules[k[0]].window + self.ttl < now and not acc.reserved(now)
        ]
        for k in dead:
            del self._accounts[k]

    def admit(self, subjects: dict[str, str | None], now: float) -> Admission | Refusal:
        """Admit (reserving on every applicable budget) or refuse, atomically."""
        if len(self._accounts) > 4096:
            self._gc(now)
        accounts: list[tuple[BudgetRule, str, AccountKey, _Account]] = []
        for rule in self.rules:
            subject = subjects.get(rule.per)
            if subject is None:
                continue
            key = self._key(rule, subject, now)
            acc = self._accounts.setdefault(key, _Account())
            if acc.committed + acc.reserved(now) >= rule.limit:
                _, end = window_bounds(rule.window, now)
                # Only in-flight reservations block: they settle within seconds.
                retry = end - now if acc.committed >= rule.limit else 1.0
                return Refusal(rule, subject, retry, acc.committed)
            accounts.append((rule, subject, key, acc))
        holds = []
        for rule, subject, key, acc in accounts:
            hold_id = next(self._ids)
            acc.holds[hold_id] = (rule.reserve, now + self.ttl)
            holds.append(Hold(rule, subject, key[2], hold_id))
        return Admission(tuple(holds))

    def extend(self, holds: Iterable[Hold], spent: int, now: float) -> Refusal | None:
        """Grow holds that ``spent`` (the run's cost so far) has used up, if budget is left.

        Returns a refusal for the first budget that has no headroom for another reservation.
        """
        for hold in holds:
            acc = self._accounts.get((hold.rule.index, hold.subject, hold.window_start))
            if acc is None or hold.hold_id not in acc.holds:
                continue
            amount, _ = acc.holds[hold.hold_id]
            if spent < amount:
                continue
            if acc.committed + acc.reserved(now) >= hold.rule.limit:
                _, end = window_bounds(hold.rule.window, now)
                return Refusal(hold.rule, hold.subject, end - now, acc.committed)
            # The run is alive and spending: its grown reservation gets a fresh lifetime.
            acc.holds[hold.hold_id] = (spent + hold.rule.reserve, now + self.ttl)
        return None

    def settle(self, holds: Iterable[Hold], actual: int) -> None:
        """Replace each hold by the actual cost (``actual=0`` releases it)."""
        for hold in holds:
            key = (hold.rule.index, hold.subject, hold.window_start)
            acc = self._accounts.setdefault(key, _Account())
            acc.holds.pop(hold.hold_id, None)
            acc.committed += actual

    def snapshot(self, rule: BudgetRule, subject: str, now: float) -> tuple[int, int]:
        """``(committed, reserved)`` of the current window (for reports and tests)."""
        acc = self._accounts.get(self._key(rule, subject, now))
        if acc is None:
            return (0, 0)
        return (acc.committed, acc.reserved(now))
