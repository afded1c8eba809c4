"""``MeteringSettings``: the metering options, validated once (no I/O), read by both shells.

:func:`settings_from_options` turns the keywords of :class:`~agenthood_mw.metering.Metering` into
one frozen value; each option is checked by one small function here and the error names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agenthood_mw._core.budgets import DEFAULT_MAX_ACCOUNTS
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw.metering._alerts import AlertSink, LoggingAlertSink, normalise_sinks
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._ledger import Ledger
from agenthood_mw.metering._prices import PriceTable
from agenthood_mw.metering._traces import TraceStore

__all__ = ["SAME_AS_LEDGER", "MeteringSettings", "settings_from_options"]

#: ``traces=`` default: the ledger's URL (``memory://`` when the ledger is an object).
SAME_AS_LEDGER = "same-as-ledger"


def _agent_names(agents: object) -> frozenset[str] | None:
    if agents is None:
        return None
    if isinstance(agents, str | bytes) or not isinstance(agents, Iterable):
        raise TypeError("agents: expected a collection of agent names (or None)")
    names = frozenset(agents)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError("agents: every agent name must be a non-empty string")
    return names


def _prices(prices: object) -> PriceTable:
    if isinstance(prices, Mapping):
        prices = PriceTable(prices)
    if not isinstance(prices, PriceTable):
        raise TypeError("prices: expected a PriceTable or a mapping of model prices")
    return prices


def _ledger(ledger: object) -> Ledger | str:
    if not isinstance(ledger, Ledger | str):
        raise TypeError("ledger: expected a URL ('memory://', 'sqlite:///costs.db', ...)")
    return ledger


def _budgets(budgets: object, agents: frozenset[str] | None) -> tuple[Budget, ...]:
    if not isinstance(budgets, Iterable) or isinstance(budgets, Budget | str | bytes):
        raise TypeError("budgets: expected a list of Budget objects")
    found = tuple(budgets)
    if not all(isinstance(b, Budget) for b in found):
        raise TypeError("budgets: every item must be an agenthood_mw.Budget")
    if agents is None and any(b.per == "agent" for b in found):
        raise ValueError(
            "agents: a per='agent' Budget needs agents=[...] (the agent names the app "
            "declares), so that names taken from request paths cannot mint budget accounts"
        )
    return found


def _thinking(
    default: object, per_agent: object
) -> tuple[ThinkingBudget | None, Mapping[str, ThinkingBudget]]:
    if default is not None and not isinstance(default, ThinkingBudget):
        raise TypeError("thinking_budget: expected a ThinkingBudget")
    tbs = dict(per_agent or {})  # type: ignore[call-overload]
    for name, tb in tbs.items():
        if not isinstance(name, str) or not isinstance(tb, ThinkingBudget):
            raise TypeError("thinking_budgets: expected a mapping of agent name to ThinkingBudget")
    return default, tbs


def _tokens_per_minute(value: object) -> object:
    if value is None:
        return None
    from agenthood_mw.ratelimit import RateLimiter

    if isinstance(value, RateLimiter):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("tokens_per_minute: expected a positive int (or a RateLimiter)")
    return value


def _traces(traces: object, ledger: Ledger | str) -> TraceStore | str | None:
    if traces is SAME_AS_LEDGER or traces == SAME_AS_LEDGER:
        traces = ledger if isinstance(ledger, str) else "memory://"
    if traces is None or traces is False:
        return None
    if not isinstance(traces, TraceStore | str):
        raise TypeError("traces: expected a URL, a TraceStore, or None to disable traces")
    return traces


def _alerts(on_alert: object, spike_rule: object) -> tuple[AlertSink, ...]:
    sinks = normalise_sinks(LoggingAlertSink() if on_alert == "log" else on_alert)
    if spike_rule is not None and not isinstance(spike_rule, SpikeRule):
        raise TypeError("spike_rule: expected a SpikeRule")
    return sinks


@dataclass(frozen=True, slots=True, kw_only=True)
class MeteringSettings:
    """Every metering option, validated (a ``TypeError``/``ValueError`` naming the option).

    Built once from the keywords of :class:`~agenthood_mw.metering.Metering` (and so of both
    ``CostMeterMiddleware`` shells) by :func:`settings_from_options`; nothing is opened here:
    :class:`~agenthood_mw.metering.Metering` opens the stores from these values.
    """

    prices: PriceTable
    ledger: Ledger | str
    budgets: tuple[Budget, ...]
    alert_sinks: tuple[AlertSink, ...]
    spike_rule: SpikeRule
    tokens_per_minute: object  # None, a positive int or a RateLimiter
    token_storage: str
    thinking_budget: ThinkingBudget | None
    thinking_budgets: Mapping[str, ThinkingBudget]
    traces: TraceStore | str | None
    trace_retention: object
    reservation_ttl: float
    budget_storage: str
    budget_key_prefix: str
    cost_header: bool
    exempt: PathSet
    opentelemetry: object
    clock: Callable[[], float]
    agents: frozenset[str] | None
    max_budget_accounts: int


def settings_from_options(
    *,
    prices: object,
    ledger: object = "memory://",
    budgets: Iterable[Budget] = (),
    on_alert: object = "log",
    spike_rule: SpikeRule | None = None,
    tokens_per_minute: object = None,
    token_storage: str = "memory://",  # noqa: S107 - a URL
    thinking_budget: ThinkingBudget | None = None,
    thinking_budgets: Mapping[str, ThinkingBudget] | None = None,
    traces: object = SAME_AS_LEDGER,
    trace_retention: object = "30d",
    reservation_ttl: object = "10m",
    budget_storage: str = "memory://",
    budget_key_prefix: str = "agenthood:budget:",
    cost_header: bool = True,
    exempt_paths: Iterable[str] = (),
    opentelemetry: object = False,
    clock: Callable[[], float] | None = None,
    agents: Iterable[str] | None = None,
    max_budget_accounts: int = DEFAULT_MAX_ACCOUNTS,
) -> MeteringSettings:
    """Validate the options of :class:`~agenthood_mw.metering.Metering` (no store is opened)."""
    names = _agent_names(agents)
    checked_prices = _prices(prices)
    if clock is None:
        clock = time.time
    if not callable(clock):
        raise TypeError("clock: expected a callable returning Unix seconds")
    checked_ledger = _ledger(ledger)
    checked_budgets = _budgets(budgets, names)
    ttl = parse_duration(reservation_ttl, option="reservation_ttl")
    default_tb, agent_tbs = _thinking(thinking_budget, thinking_budgets)
    tpm = _tokens_per_minute(tokens_per_minute)
    if not isinstance(cost_header, bool):
        raise TypeError("cost_header: expected a bool")
    exempt = PathSet(exempt_paths, option="exempt_paths")
    if trace_retention is not None:  # checked even when no trace store is built here
        parse_duration(trace_retention, option="trace_retention")
    return MeteringSettings(
        prices=checked_prices,
        ledger=checked_ledger,
        budgets=checked_budgets,
        alert_sinks=_alerts(on_alert, spike_rule),
        spike_rule=spike_rule or SpikeRule(),
        tokens_per_minute=tpm,
        token_storage=token_storage,
        thinking_budget=default_tb,
        thinking_budgets=agent_tbs,
        traces=_traces(traces, checked_ledger),
        trace_retention=trace_retention,
        reservation_ttl=ttl,
        budget_storage=budget_storage,
        budget_key_prefix=budget_key_prefix,
        cost_header=cost_header,
        exempt=exempt,
        opentelemetry=opentelemetry,
        clock=clock,
        agents=names,
        max_budget_accounts=max_budget_accounts,
    )
