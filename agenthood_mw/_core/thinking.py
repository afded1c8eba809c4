"""``ThinkingBudget``: the per-agent stop rule for runaway agent loops. Pure decisions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.pricing import NANOS_PER_DOLLAR, to_decimal

__all__ = ["STOP_REASONS", "ThinkingBudget"]

#: Every stop reason a thinking budget can produce, in the order they are checked.
STOP_REASONS: Final = (
    "budget_exhausted:steps",
    "budget_exhausted:tokens",
    "budget_exhausted:cost",
    "budget_exhausted:seconds",
)


def _min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True, init=False)
class ThinkingBudget:
    """How far one agent run may go: steps, tokens (input + output), cost, wall-clock seconds.

    ``None`` means "no limit" for that dimension. Set one per agent on the middleware
    (``thinking_budgets={"the-developer": ThinkingBudget(max_steps=20)}``); a request may only
    lower it (:meth:`lowered_by`). ``meter.check_budget()`` applies it before each step or model
    call and raises :class:`~agenthood_mw.metering.BudgetExhausted` with a ``reason`` such as
    ``"budget_exhausted:steps"``.
    """

    max_steps: int | None
    max_tokens: int | None
    max_cost: Decimal | None
    max_seconds: float | None

    def __init__(
        self,
        max_steps: int | None = None,
        max_tokens: int | None = None,
        max_cost: Decimal | str | int | None = None,
        max_seconds: float | str | None = None,
    ) -> None:
        for name, v in (("max_steps", max_steps), ("max_tokens", max_tokens)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise TypeError(f"ThinkingBudget {name}: expected an int or None")
            if v is not None and v < 0:
                raise ValueError(f"ThinkingBudget {name}: must not be negative")
        cost = None
        if max_cost is not None:
            cost = to_decimal(max_cost, option="ThinkingBudget max_cost")
            if cost < 0:
                raise ValueError("ThinkingBudget max_cost: must not be negative")
        seconds = None
        if max_seconds is not None:
            seconds = parse_duration(max_seconds, option="ThinkingBudget max_seconds")
        object.__setattr__(self, "max_steps", max_steps)
        object.__setattr__(self, "max_tokens", max_tokens)
        object.__setattr__(self, "max_cost", cost)
        object.__setattr__(self, "max_seconds", seconds)

    @property
    def max_cost_nanos(self) -> int | None:
        """``max_cost`` in nano-dollars."""
        if self.max_cost is None:
            return None
        return int(self.max_cost * NANOS_PER_DOLLAR)

    @property
    def unlimited(self) -> bool:
        return (
            self.max_steps is None
            and self.max_tokens is None
            and self.max_cost is None
            and self.max_seconds is None
        )

    def lowered_by(self, other: ThinkingBudget | None) -> ThinkingBudget:
        """Element-wise minimum: ``other`` may lower any limit, never raise one."""
        if other is None:
            return self
        if not isinstance(other, ThinkingBudget):
            raise TypeError("lowered_by() needs a ThinkingBudget")
        return ThinkingBudget(
            max_steps=_min(self.max_steps, other.max_steps),
            max_tokens=_min(self.max_tokens, other.max_tokens),
            max_cost=_min(self.max_cost, other.max_cost),
            max_seconds=_min(self.max_seconds, other.max_seconds),
        )

    def exhausted(self, *, steps: int, tokens: int, cost_nanos: int, elapsed: float) -> str | None:
        """The stop reason if another step or model call must not start, else ``None``.

        A limit is reached when the amount used is at or above it (``max_steps=3`` allows three
        steps; the check before a fourth stops the run).
        """
        if self.max_steps is not None and steps >= self.max_steps:
            return STOP_REASONS[0]
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return STOP_REASONS[1]
        limit = self.max_cost_nanos
        if limit is not None and cost_nanos >= limit:
            return STOP_REASONS[2]
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            return STOP_REASONS[3]
        return None
