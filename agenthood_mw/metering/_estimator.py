"""``CostEstimator``: the operator's report API over a ledger (the runbook's "cost spike")."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from agenthood_mw._core.pricing import nanos_to_decimal
from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw._core.spikes import SpikeDecision, SpikeRule, day_of
from agenthood_mw.metering._alerts import SpikeAlert, emit, make_alert, normalise_sinks
from agenthood_mw.metering._ledger import Ledger, Per, Spend, check_per

__all__ = ["CostEstimator"]


def _ts(value: float | datetime | None, option: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{option}: use a timezone-aware datetime")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{option}: expected a Unix timestamp or an aware datetime")


class CostEstimator:
    """Spend per user and per agent, top spenders, 7-day averages and the spike check.

    This is an explicit **operator** API: it reads across users. Per-user reads elsewhere
    always take a :class:`MemoryScope`.

    Args:
        ledger: the ledger to report on (e.g. ``middleware.ledger``).
        spike_rule: the alert rule (default :class:`SpikeRule()`).
        clock: Unix-seconds clock (tests).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        spike_rule: SpikeRule | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(ledger, Ledger):
            raise TypeError("ledger: expected a Ledger (e.g. CostMeterMiddleware(...).ledger)")
        self.ledger = ledger
        self.rule = spike_rule or SpikeRule()
        self._clock = clock

    async def spend(
        self,
        per: Per = "user",
        *,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
    ) -> list[Spend]:
        """Spend of every user (or agent, or tenant) in ``[since, until)``, highest first."""
        return await self.ledger.report(
            check_per(per), since=_ts(since, "since"), until=_ts(until, "until")
        )

    async def top_spenders(
        self,
        per: Per = "user",
        *,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        limit: int = 10,
    ) -> list[Spend]:
        """The ``limit`` largest spenders of the period."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError("limit: must be a positive int")
        return (await self.spend(per, since=since, until=until))[:limit]

    async def user_spend(
        self,
        scope: MemoryScope,
        *,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
    ) -> Decimal:
        """Total spend of one user."""
        return await self.ledger.spend(
            require_scope(scope), since=_ts(since, "since"), until=_ts(until, "until")
        )

    async def seven_day_average(
        self, per: Per, subject: str | MemoryScope, *, day: int | None = None
    ) -> Decimal:
        """The spike rule's baseline: spend of the 7 full days before ``day`` (UTC day number,
        default today) divided by 7."""
        today = day_of(self._clock()) if day is None else day
        hist = await self.ledger.daily_spend(per, subject, today=today)
        return nanos_to_decimal(sum(hist.previous) // 7)

    async def evaluate(
        self, per: Per = "user", *, day: int | None = None
    ) -> list[tuple[str, SpikeDecision]]:
        """Apply the spike rule to every subject that spent on ``day`` (default today)."""
        per = check_per(per)
        today = day_of(self._clock()) if day is None else day
        start = float(today * 86400)
        rows = await self.ledger.report(per, since=start, until=start + 86400)
        out = []
        for row in rows:
            key: str | MemoryScope = row.scope if row.scope is not None else row.subject
            hist = await self.ledger.daily_spend(per, key, today=today)
            name = row.scope.storage_key if row.scope is not None else row.subject
            out.append((name, self.rule.decide(hist, today)))
        return out

    async def check_spikes(
        self, *, on_alert: object = None, day: int | None = None
    ) -> list[SpikeAlert]:
        """Evaluate users and agents and emit each alert at most once per subject per day
        (shared with the middleware's own checks through the ledger). For a cron job."""
        sinks = normalise_sinks(on_alert)
        today = day_of(self._clock()) if day is None else day
        alerts: list[SpikeAlert] = []
        for per in ("user", "agent"):
            for key, decision in await self.evaluate(per, day=today):
                if decision.alert and await self.ledger._call(
                    self.ledger.claim_alert, per, key, today, self._clock()
                ):
                    alert = make_alert(per, key, today, decision)
                    alerts.append(alert)
                    emit(sinks, alert)
        return alerts
