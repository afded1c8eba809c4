"""Plain records a run produces: usage events, trace events and the run summary."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, NamedTuple

from agenthood_mw._core.pricing import format_nanos, nanos_to_decimal
from agenthood_mw._core.scope import MemoryScope

__all__ = [
    "KEPT",
    "NEW",
    "REPLAY",
    "RunRecord",
    "Totals",
    "UsageEvent",
    "as_counted",
    "json_safe",
    "new_nanos",
]

# What a ledger did with each usage event of a run (``Ledger.write_usage``):
#: stored now;
NEW = 1
#: already stored for this same run (the run was written before, e.g. replayed from the spool);
KEPT = 0
#: its key was already stored for another run (a replayed idempotency key): counted there.
REPLAY = -1

_MAX_TEXT = 4096
# One encoder for every trace (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable, size-bounded copy of ``value`` for traces."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    if depth < 6 and isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in list(value.items())[:200]}
    if depth < 6 and isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in list(value)[:200]]
    text = repr(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


class Totals(NamedTuple):
    """What a run used so far. ``total_cost`` is an exact ``Decimal`` of dollars."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanos: int = 0
    model_calls: int = 0
    steps: int = 0
    tool_calls: int = 0

    @property
    def total_cost(self) -> Decimal:
        return nanos_to_decimal(self.cost_nanos)

    @property
    def cost_text(self) -> str:
        """``total_cost`` as a plain decimal string (``"0.0018"``)."""
        return format_nanos(self.cost_nanos)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_cost_json(self) -> dict[str, Any]:
        """The seed's ``cost`` object: ``{"inputTokens", "outputTokens", "totalCost"}``.

        ``totalCost`` is the exact decimal total converted once to a JSON number for display
        (sums are never made in floats; the ledger keeps integer nano-dollars).
        """
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalCost": float(self.total_cost),
        }


class UsageEvent(NamedTuple):
    """One metered model call, as written to the ledger."""

    def as_trace_event(self) -> dict[str, Any]:
        """The ``model_call`` event of the trace."""
        return {
            "type": "model_call",
            "model": self.model,
            "provider": self.provider,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cachedInputTokens": self.cached_input_tokens,
            "reasoningTokens": self.reasoning_tokens,
            "cost": format_nanos(self.cost_nanos),
            "ts": self.ts,
        }

    event_key: str
    run_id: str
    ts: float
    model: str
    provider: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cache_creation_input_tokens: int
    cost_nanos: int


class RunRecord(NamedTuple):
    """One finished run: attribution, totals, usage events and the trace events."""

    run_id: str
    scope: MemoryScope
    agent: str | None
    started_at: float
    ended_at: float
    status: int | None
    stop_reason: str | None
    error: str | None
    totals: Totals
    usage: tuple[UsageEvent, ...]
    events: tuple[dict[str, Any] | UsageEvent, ...] = ()
    path: str | None = None

    @property
    def tenant(self) -> str | None:
        return self.scope.tenant

    def trace(self) -> dict[str, Any]:
        """The trace document stored for this run (JSON-ready)."""
        t = self.totals
        return {
            "runId": self.run_id,
            "memoryScope": self.scope.label,
            "agent": self.agent,
            "path": self.path,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "status": self.status,
            "stopReason": self.stop_reason,
            "error": self.error,
            "totals": {
                "inputTokens": t.input_tokens,
                "outputTokens": t.output_tokens,
                "cachedInputTokens": t.cached_input_tokens,
                "reasoningTokens": t.reasoning_tokens,
                "totalCost": t.cost_text,
                "steps": t.steps,
                "toolCalls": t.tool_calls,
                "modelCalls": t.model_calls,
            },
            "events": self.event_dicts(),
        }

    def event_dicts(self) -> list[dict[str, Any]]:
        """The trace events as JSON-ready dicts (model calls are kept as usage events)."""
        return [e.as_trace_event() if isinstance(e, UsageEvent) else e for e in self.events]

    def trace_json(self) -> str:
        """:meth:`trace` as compact JSON (written by the SQL trace stores' writer thread).

        Assembled field by field -- the same document ``json.dumps`` would produce, at a
        fraction of its cost per run; the events list still goes through the JSON encoder.
        """
        started, ended = self.started_at, self.ended_at
        if not (_finite_number(started) and _finite_number(ended)):
            return _ENCODER.encode(self.trace())
        t = self.totals
        events = self.events
        status = self.status
        return (
            f'{{"runId":{_quote(self.run_id)},"memoryScope":{_quote(self.scope.label)},'
            f'"agent":{_text(self.agent)},"path":{_text(self.path)},'
            f'"startedAt":{started!r},"endedAt":{ended!r},'
            f'"status":{"null" if status is None else format(status, "d")},'
            f'"stopReason":{_text(self.stop_reason)},"error":{_text(self.error)},'
            f'"totals":{{"inputTokens":{t.input_tokens:d},"outputTokens":{t.output_tokens:d},'
            f'"cachedInputTokens":{t.cached_input_tokens:d},'
            f'"reasoningTokens":{t.reasoning_tokens:d},"totalCost":{_quote(t.cost_text)},'
            f'"steps":{t.steps:d},"toolCalls":{t.tool_calls:d},"modelCalls":{t.model_calls:d}}},'
            f'"events":{_ENCODER.encode(self.event_dicts()) if events else "[]"}}}'
        )


def _text(value: str | None) -> str:
    return "null" if value is None else _quote(str(value))


def _finite_number(value: object) -> bool:
    if type(value) is int:
        return True
    return type(value) is float and math.isfinite(value)


def new_nanos(run: RunRecord, statuses: Sequence[int]) -> int:
    """Nano-dollars the ledger newly recorded for ``run`` (its :data:`NEW` events)."""
    return sum(ev.cost_nanos for ev, st in zip(run.usage, statuses, strict=True) if st == NEW)


def as_counted(run: RunRecord, statuses: Sequence[int]) -> RunRecord:
    """``run`` as the ledger counts it: the totals leave out the usage events the ledger
    refused as replays of another run's idempotency key (:data:`REPLAY`), which stay in the
    trace as ``model_call`` events marked ``"replayed": true`` with ``"cost": "0"``.

    So a trace never counts money the ledger did not: the ledger is the one source of truth.
    A run without replays is returned unchanged.
    """
    if REPLAY not in statuses:
        return run
    kept: list[UsageEvent] = []
    replayed: set[int] = set()
    for ev, st in zip(run.usage, statuses, strict=True):
        if st == REPLAY:
            replayed.add(id(ev))
        else:
            kept.append(ev)
    t = run.totals
    gone = [ev for ev in run.usage if id(ev) in replayed]
    totals = t._replace(
        input_tokens=t.input_tokens - sum(e.input_tokens for e in gone),
        output_tokens=t.output_tokens - sum(e.output_tokens for e in gone),
        cached_input_tokens=t.cached_input_tokens - sum(e.cached_input_tokens for e in gone),
        reasoning_tokens=t.reasoning_tokens - sum(e.reasoning_tokens for e in gone),
        cost_nanos=t.cost_nanos - sum(e.cost_nanos for e in gone),
        model_calls=len(kept),
    )
    events = tuple(
        _replayed_event(e) if isinstance(e, UsageEvent) and id(e) in replayed else e
        for e in run.events
    )
    return run._replace(totals=totals, usage=tuple(kept), events=events)


def _replayed_event(ev: UsageEvent) -> dict[str, Any]:
    event = ev.as_trace_event()
    event["cost"] = "0"
    event["replayed"] = True
    event["idempotencyKey"] = ev.event_key[2:]
    return event
