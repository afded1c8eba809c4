"""``Budget``: a hard spend limit per user, agent or tenant over a window."""

from __future__ import annotations

from decimal import Decimal

from agenthood_mw._core.budgets import BudgetRule
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.pricing import format_nanos, to_nanos
from agenthood_mw.metering._ledger import Per, check_per

__all__ = ["Budget"]


class Budget:
    """A hard budget: requests are refused (429 ``budget_exceeded``) once it is spent.

    Args:
        per: ``"user"``, ``"agent"`` or ``"tenant"`` -- whose spend is limited.
        limit: dollars per window (``Decimal`` or a string such as ``"20.00"``; never a float).
        window: ``"1d"``, ``"30d"``, ``"1h"`` ... Windows are fixed and aligned to the Unix epoch
            in UTC (``"1d"`` resets at 00:00 UTC).
        reserve: dollars reserved by each admitted request until its real cost is known
            (default: 1% of ``limit``). Concurrent requests overshoot the limit by at most one
            reservation as long as each request's cost stays within it; a run that spends its
            reservation must call ``meter.check_budget()``, which extends the reservation while
            the budget has headroom and stops the run otherwise.
    """

    __slots__ = ("limit", "per", "reserve", "window", "window_seconds")

    def __init__(
        self,
        *,
        per: Per = "user",
        limit: Decimal | str | int,
        window: str | float = "1d",
        reserve: Decimal | str | int | None = None,
    ) -> None:
        self.per: Per = check_per(per, option="Budget per")
        limit_nanos = to_nanos(limit, option="Budget limit")
        if limit_nanos <= 0:
            raise ValueError("Budget limit: must be positive")
        self.limit = limit_nanos
        self.window = window
        self.window_seconds = parse_duration(window, option="Budget window")
        if reserve is None:
            self.reserve = max(1, limit_nanos // 100)
        else:
            self.reserve = to_nanos(reserve, option="Budget reserve")
            if self.reserve <= 0:
                raise ValueError("Budget reserve: must be positive")

    def rule(self, index: int) -> BudgetRule:
        return BudgetRule(self.per, self.limit, self.window_seconds, self.reserve, index)

    def __repr__(self) -> str:
        return (
            f"Budget(per={self.per!r}, limit={format_nanos(self.limit)!r}, "
            f"window={self.window!r}, reserve={format_nanos(self.reserve)!r})"
        )
