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
    "DEFAULT_MAX_ACCOUNTS",
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
        if not self.holds:
            return 0
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


#: Accounts a :class:`BudgetBook` keeps before it evicts the least recently used idle ones.
DEFAULT_MAX_ACCOUNTS: Final = 100_000


class BudgetBook:
    """Committed spend and live reservations of every (budget, subject, window).

    Not thread-safe by itself: the caller serialises calls (the metering engine holds a lock).
    ``needs_load`` / ``load`` let the caller seed a window's committed spend from the ledger
    the first time it is seen (after a restart).

    The book is bounded: accounts of windows that ended (plus one ``ttl``) are dropped in one
    pass when the earliest of them becomes collectable (not on every admission), and beyond
    ``max_accounts`` the least recently used accounts without live reservations are evicted.
    An evicted account is simply seeded from the ledger again the next time it is needed, so
    eviction never forgets spend the ledger has.
    """

    def __init__(
        self,
        rules: Sequence[BudgetRule],
        *,
        ttl: float,
        max_accounts: int = DEFAULT_MAX_ACCOUNTS,
    ) -> None:
        if isinstance(max_accounts, bool) or not isinstance(max_accounts, int) or max_accounts < 1:
            raise ValueError("max_budget_accounts: expected a positive int")
        self.rules = tuple(rules)
        self.ttl = ttl
        self.max_accounts = max_accounts
        # Least recently used first (admission moves an account to the end).
        self._accounts: dict[AccountKey, _Account] = {}
        self._ids = itertools.count(1)
        self._next_gc = -math.inf

    def __len__(self) -> int:
        return len(self._accounts)

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
        key = self._key(rule, subject, now)
        if key not in self._accounts:
            self._accounts[key] = _Account(committed=committed)
            self._bound(now)

    def _gc(self, now: float) -> None:
        """Forget windows that ended more than one ttl ago and hold nothing (one pass)."""
        kept_live = False
        dead = []
        for k, acc in self._accounts.items():
            if k[2] + self.rules[k[0]].window + self.ttl < now:
                if acc.reserved(now):
                    kept_live = True
                else:
                    dead.append(k)
        for k in dead:
            del self._accounts[k]
        # Next pass: when the current windows end (plus ttl), or when kept holds expire.
        ends = [window_bounds(r.window, now)[1] for r in self.rules]
        nxt = (min(ends) if ends else math.inf) + self.ttl
        self._next_gc = min(nxt, now + self.ttl) if kept_live else nxt

    def _bound(self, now: float) -> None:
        """Evict least recently used idle accounts once the book exceeds ``max_accounts``."""
        if len(self._accounts) <= self.max_accounts:
            return
        target = self.max_accounts - max(1, self.max_accounts // 10)
        excess = len(self._accounts) - target
        victims = []
        for k, acc in self._accounts.items():
            if not acc.reserved(now):
                victims.append(k)
                if len(victims) >= excess:
                    break
        for k in victims:
            del self._accounts[k]

    def admit(self, subjects: dict[str, str | None], now: float) -> Admission | Refusal:
        """Admit (reserving on every applicable budget) or refuse, atomically."""
        if now >= self._next_gc:
            self._gc(now)
        book = self._accounts
        accounts: list[tuple[BudgetRule, str, AccountKey, _Account]] = []
        created = False
        for rule in self.rules:
            subject = subjects.get(rule.per)
            if subject is None:
                continue
            key = self._key(rule, subject, now)
            acc = book.pop(key, None)
            if acc is None:
                acc = _Account()
                created = True
            book[key] = acc  # most recently used
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
        if created:
            self._bound(now)
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

    def resize(self, holds: Iterable[Hold], amount: int, now: float) -> Refusal | None:
        """Set each hold to ``amount`` (the run's spend so far plus its calls in flight).

        Growing is allowed only when it fits: ``committed + other reservations + amount`` must
        stay within the limit, else the refusal of the first budget it does not fit (nothing
        is changed). Shrinking always succeeds. All holds change, or none.
        """
        found = []
        for hold in holds:
            acc = self._accounts.get((hold.rule.index, hold.subject, hold.window_start))
            if acc is None:
                continue  # collected after its hold expired: the ledger has the spend
            reserved = acc.reserved(now)  # drops expired holds first
            current = acc.holds[hold.hold_id][0] if hold.hold_id in acc.holds else 0
            if amount > current and acc.committed + reserved - current + amount > hold.rule.limit:
                _, end = window_bounds(hold.rule.window, now)
                retry = end - now if acc.committed >= hold.rule.limit else 1.0
                return Refusal(hold.rule, hold.subject, retry, acc.committed)
            found.append((hold, acc))
        for hold, acc in found:
            acc.holds[hold.hold_id] = (amount, now + self.ttl)
        return None

    def settle(self, holds: Iterable[Hold], actual: int) -> None:
        """Replace each hold by the actual cost (``actual=0`` releases it)."""
        for hold in holds:
            acc = self._accounts.get((hold.rule.index, hold.subject, hold.window_start))
            if acc is None:
                # Collected after its hold expired: the cost is in the ledger, which seeds
                # the account again when it is next needed.
                continue
            acc.holds.pop(hold.hold_id, None)
            acc.committed += actual

    def snapshot(self, rule: BudgetRule, subject: str, now: float) -> tuple[int, int]:
        """``(committed, reserved)`` of the current window (for reports and tests)."""
        acc = self._accounts.get(self._key(rule, subject, now))
        if acc is None:
            return (0, 0)
        return (acc.committed, acc.reserved(now))
