"""Cost metering: per-request cost, spend budgets, spike alerts, thinking budgets, run traces.

``CostMeterMiddleware`` (ASGI; the WSGI twin is in :mod:`agenthood_mw.wsgi`) opens one
:class:`Meter` per request (``current_meter()``); agents report usage with ``meter.record(...)``.
Both shells meter through a :class:`Metering` (``begin`` / ``end``), which a user may build
first and pass as ``metering=`` to keep a handle on it.
Money is ``Decimal`` in and integer nano-dollars stored. See ``docs/cost-metering.md``.
"""

from __future__ import annotations

from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw.metering._alerts import LoggingAlertSink, SpikeAlert, WebhookAlertSink
from agenthood_mw.metering._asgi import CostMeterMiddleware
from agenthood_mw.metering._background import bind
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._calls import CallReservation, estimate_tokens
from agenthood_mw.metering._engine import Metering
from agenthood_mw.metering._estimator import CostEstimator
from agenthood_mw.metering._ledger import Ledger, MemoryLedger, Spend
from agenthood_mw.metering._ledger_sql import PostgresLedger, SQLiteLedger, ledger_from_url
from agenthood_mw.metering._meter import (
    BudgetExhausted,
    Meter,
    current_meter,
    reset_meter,
    set_meter,
)
from agenthood_mw.metering._prices import PriceTable, UnknownModelError
from agenthood_mw.metering._records import RunRecord, Totals, UsageEvent
from agenthood_mw.metering._settings import MeteringSettings
from agenthood_mw.metering._traces import (
    MemoryTraceStore,
    PostgresTraceStore,
    SQLiteTraceStore,
    TraceStore,
    trace_store_from_url,
)
from agenthood_mw.metering._usage import (
    AnthropicStreamUsage,
    ResponseUsage,
    anthropic_usage,
    openai_usage,
    usage_of,
)
from agenthood_mw.metering._wsgi import CostMeterMiddleware as WSGICostMeterMiddleware

__all__ = [
    "AnthropicStreamUsage",
    "Budget",
    "BudgetExhausted",
    "CallReservation",
    "CostEstimator",
    "CostMeterMiddleware",
    "Ledger",
    "LoggingAlertSink",
    "MemoryLedger",
    "MemoryTraceStore",
    "Meter",
    "Metering",
    "MeteringSettings",
    "PostgresLedger",
    "PostgresTraceStore",
    "PriceTable",
    "ResponseUsage",
    "RunRecord",
    "SQLiteLedger",
    "SQLiteTraceStore",
    "Spend",
    "SpikeAlert",
    "SpikeRule",
    "ThinkingBudget",
    "Totals",
    "TraceStore",
    "UnknownModelError",
    "UsageEvent",
    "WSGICostMeterMiddleware",
    "WebhookAlertSink",
    "anthropic_usage",
    "bind",
    "current_meter",
    "estimate_tokens",
    "ledger_from_url",
    "openai_usage",
    "reset_meter",
    "set_meter",
    "trace_store_from_url",
    "usage_of",
]
