"""The runbook's cost-spike rule, as a pure function plus a once-per-day de-duplicator.

Rule (per user, and the same per agent): alert when today's spend exceeds ``factor`` (2) times
the 7-day average, where the baseline is the spend of the previous 7 **full** UTC days divided by
7. The rule applies only to subjects with at least ``min_history_days`` (3) full days of history
(days since their first recorded spend, before today); the excess over the threshold must be at
least ``min_excess`` so cents do not page anyone. Subjects with less history alert when today's
spend reaches ``new_subject_threshold``. At most one alert per subject per day.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from agenthood_mw._core.pricing import nanos_to_decimal, to_nanos

__all__ = ["DAY", "History", "SpikeDecision", "SpikeRule", "day_of"]

DAY = 86400


def day_of(ts: float) -> int:
    """The UTC day number (days since 1970-01-01) of a Unix timestamp."""
    return int(ts // DAY)


class History(NamedTuple):
    """What the rule needs about one subject on one day (all amounts in nano-dollars).

    Attributes:
        today: spend so far today.
        previous: spend of each of the previous ``baseline_days`` full days, oldest first.
        first_day: UTC day number of the subject's first recorded spend (``None``: never).
    """

    today: int
    previous: tuple[int, ...]
    first_day: int | None


class SpikeDecision(NamedTuple):
    """Why (or why not) a subject alerts today."""

    alert: bool
    rule: str  # "baseline" or "new_subject"
    today: int
    baseline: int  # 7-day average in nano-dollars (0 for the new-subject rule)
    threshold: int  # spend above which (plus min_excess) the alert fires
    history_days: int


class SpikeRule:
    """Parameters of the spike rule (amounts in dollars, ``Decimal`` or strings).

    Args:
        factor: today's spend must exceed ``factor`` x the baseline (default 2).
        baseline_days: full days averaged for the baseline (default 7).
        min_history_days: full days of history needed for the baseline rule (default 3).
        min_excess: minimum dollars above ``factor`` x baseline (default ``"1.00"``).
        new_subject_threshold: today's spend that alerts a subject with too little history
            (default ``"10.00"``); ``None`` disables alerts for such subjects.
    """

    __slots__ = (
        "_den",
        "_num",
        "baseline_days",
        "factor",
        "min_excess",
        "min_history_days",
        "new_subject_threshold",
    )

    def __init__(
        self,
        *,
        factor: Decimal | str | int = 2,
        baseline_days: int = 7,
        min_history_days: int = 3,
        min_excess: Decimal | str | int = "1.00",
        new_subject_threshold: Decimal | str | int | None = "10.00",
    ) -> None:
        if isinstance(factor, float):
            raise TypeError("SpikeRule factor: use an int, Decimal or string")
        self.factor = Decimal(factor)
        if not self.factor.is_finite() or self.factor <= 0:
            raise ValueError("SpikeRule factor: must be positive")
        # factor = num / den exactly, so the rule runs in integer arithmetic.
        num, den = self.factor.as_integer_ratio()
        self._num, self._den = num, den
        for name, v in (("baseline_days", baseline_days), ("min_history_days", min_history_days)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SpikeRule {name}: must be a positive int")
        self.baseline_days = baseline_days
        self.min_history_days = min_history_days
        self.min_excess = to_nanos(min_excess, option="SpikeRule min_excess")
        self.new_subject_threshold = (
            None
            if new_subject_threshold is None
            else to_nanos(new_subject_threshold, option="SpikeRule new_subject_threshold")
        )

    def decide(self, history: History, today: int) -> SpikeDecision:
        """Apply the rule to ``history`` for UTC day ``today``."""
        days = 0 if history.first_day is None else max(0, today - history.first_day)
        if days >= self.min_history_days:
            n = self.baseline_days
            total = sum(history.previous[-n:])
            # Exact integer comparisons with factor = num/den and baseline = total/n:
            #   today > factor * baseline              <=> today*n*den > num*total
            #   today - factor * baseline >= min_excess <=> (today-min_excess)*n*den >= num*total
            scaled_today = history.today * n * self._den
            limit = self._num * total
            over = scaled_today > limit
            excess_ok = (history.today - self.min_excess) * n * self._den >= limit
            threshold = limit // (n * self._den)
            return SpikeDecision(
                over and excess_ok, "baseline", history.today, total // n, threshold, days
            )
        absolute = self.new_subject_threshold
        alert = absolute is not None and history.today >= absolute
        return SpikeDecision(alert, "new_subject", history.today, 0, absolute or 0, days)

    def describe(self) -> str:
        return (
            f"today > {self.factor}x the {self.baseline_days}-day average "
            f"(+{nanos_to_decimal(self.min_excess)} min) after {self.min_history_days} days"
        )
