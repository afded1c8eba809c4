"""``Meter``: what one request used, reachable as ``current_meter()`` inside the request."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from decimal import Decimal
from typing import Any

from agenthood_mw._core.pricing import (
    ModelPrice,
    Usage,
    cost_nanos_of,
    nanos_to_decimal,
    to_decimal,
    to_nanos,
    valid_counts,
)
from agenthood_mw._core.scope import MemoryScope, require_scope
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw.metering._calls import CallReservation
from agenthood_mw.metering._prices import PriceTable, UnknownModelError
from agenthood_mw.metering._records import RunRecord, Totals, UsageEvent, json_safe
from agenthood_mw.metering._usage import usage_of

__all__ = ["BudgetExhausted", "Meter", "current_meter", "reset_meter", "set_meter"]

logger = logging.getLogger("agenthood_mw.metering")
_ZERO_PRICE = ModelPrice(0, 0)

#: ``BudgetExhausted.reason`` of usage reported to a meter whose run is already finished.
RUN_FINISHED = "run_finished"

#: Trace events kept per run; later ones are counted but not stored (a looping agent).
MAX_TRACE_EVENTS = 2000

_current: ContextVar[Meter | None] = ContextVar("agenthood_meter", default=None)


def new_run_id() -> str:
    """A run id: 128 random bits (``os.urandom``) as 32 hex digits.

    Unpredictable (two of a user's run ids say nothing about the traffic between them) and
    unique across threads, forked workers and restarts. 0.7 µs per id (``python -m timeit``);
    a pool of pre-drawn ids measured only 0.25 µs per request less in the full harness (1.5 %,
    below the 2 % that would justify it).
    """
    return os.urandom(16).hex()


def current_meter() -> Meter:
    """The :class:`Meter` of the request being handled.

    Raises:
        LookupError: outside a request handled by ``CostMeterMiddleware``.
    """
    meter = _current.get()
    if meter is None:
        raise LookupError("current_meter() was called outside a request metered by CostMeter")
    return meter


def set_meter(meter: Meter) -> Token[Meter | None]:
    """Bind ``meter`` as ``current_meter()`` in the current context (the middleware does this;
    so does code that runs a model call for a run outside the request's context).

    Returns the token to pass to :func:`reset_meter`.
    """
    return _current.set(meter)


def reset_meter(token: Token[Meter | None]) -> None:
    """Undo the :func:`set_meter` that returned ``token``."""
    _current.reset(token)


class BudgetExhausted(Exception):
    """A run must stop: a thinking budget or the hard spend budget is used up.

    Attributes:
        reason: ``"budget_exhausted:steps"``, ``":tokens"``, ``":cost"``, ``":seconds"`` (thinking
            budget), ``"budget_exhausted:budget"`` (a hard ``Budget`` ran out mid-run) or
            ``"run_finished"`` (the meter was already finished: the run is over).
        retry_after: seconds until the hard budget's window resets (``None`` for thinking
            budgets).
    """

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


_NO_BUDGETS: Mapping[str, ThinkingBudget] = {}
_NO_TOTALS = Totals()
_new_tuple = tuple.__new__


class Meter:
    """Token usage, cost, steps and tool calls of one run.

    The middleware creates one per request; agents and provider wrappers report usage with
    :meth:`record` and trace their work with :meth:`step` / :meth:`tool_call`, and call
    :meth:`check_budget` before each step or model call. Thread-safe.

    Args:
        prices: the :class:`PriceTable` used by :meth:`record`.
        scope: the :class:`MemoryScope` the run (and its trace) belongs to.
        agent: the agent name (attribution), or ``None``.
        thinking_budget: the default thinking budget; ``agent_budgets`` maps agent names to
            their own budget (used instead of the default once the agent is known).
        run_id: the run id (a new random 128-bit hex id by default).
    """

    # Defaults live on the class: a request that records nothing pays for no assignments.
    agent: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    _request_tb: ThinkingBudget | None = None
    _keys: dict[str, int] | None = None
    _usage: tuple[UsageEvent, ...] | list[UsageEvent] = ()
    _events: tuple[dict[str, Any] | UsageEvent, ...] | list[dict[str, Any] | UsageEvent] = ()
    _dropped = 0
    _closed = False
    _holds: tuple[Any, ...] = ()  # budget reservations (set by the metering engine)
    _in = _out = _cached = _reasoning = _nanos = 0
    _steps = _tools = 0
    path: str | None = None
    _guard: Callable[[int], float | None] | None = None
    _default_tb: ThinkingBudget | None = None
    _base_tb: ThinkingBudget | None = None
    _agent_tbs: Mapping[str, ThinkingBudget] = _NO_BUDGETS
    _mono: Callable[[], float] = time.monotonic
    _pending = 0  # nano-dollars reserved by model calls in flight (reserve_call)
    _resize: Callable[[int], float | None] | None = None  # set by the engine with budgets
    _resize_blocking = False  # whether _resize does network I/O (a Redis budget store)

    def __init__(
        self,
        *,
        prices: PriceTable,
        scope: MemoryScope,
        agent: str | None = None,
        thinking_budget: ThinkingBudget | None = None,
        agent_budgets: Mapping[str, ThinkingBudget] | None = None,
        run_id: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        budget_guard: Callable[[int], float | None] | None = None,
        path: str | None = None,
    ) -> None:
        if not isinstance(prices, PriceTable):
            raise TypeError("prices: expected a PriceTable")
        self.scope = scope if type(scope) is MemoryScope else require_scope(scope)
        self.prices = prices
        self.run_id = run_id or new_run_id()
        self.path = path
        self._clock = clock
        self._mono = monotonic
        self.started_at = clock()
        self._t0 = monotonic()
        self._lock = threading.Lock()
        self._default_tb = thinking_budget
        # Shared, read-only: the engine passes the same mapping to every meter.
        self._agent_tbs = agent_budgets or _NO_BUDGETS
        self._guard = budget_guard
        self._base_tb = thinking_budget
        if agent is not None:
            if type(agent) is str and agent:
                self.agent = agent
                tb = self._agent_tbs.get(agent)
                if tb is not None:
                    self._base_tb = tb
            else:
                self.set_agent(agent)

    @classmethod
    def _open(
        cls,
        prices: PriceTable,
        scope: MemoryScope,
        agent: str | None,
        thinking_budget: ThinkingBudget | None,
        agent_budgets: Mapping[str, ThinkingBudget],
        clock: Callable[[], float],
        budget_guard: Callable[[int], float | None] | None,
        path: str | None,
    ) -> Meter:
        """The metering engine's constructor: the same meter as ``Meter(...)``, from arguments
        the engine has already validated (``agent`` ``None`` or a non-empty string, ``scope`` a
        :class:`MemoryScope`), defaults left on the class.

        Kept for speed, measured: ``Meter(...)`` instead costs 0.9-1.4 µs more per request,
        5-8 % of the full stack's 16 µs (in-process A/B of the two constructors, CPU time, the
        harness of ``benchmarks/bench_metering.py --cpu``).
        """
        self = object.__new__(cls)
        self.scope = scope
        self.prices = prices
        self.run_id = new_run_id()
        self._clock = clock
        self.started_at = clock()
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        if path is not None:
            self.path = path
        if budget_guard is not None:
            self._guard = budget_guard
        if thinking_budget is not None:
            self._default_tb = self._base_tb = thinking_budget
        if agent_budgets:
            self._agent_tbs = agent_budgets
        if agent is not None:
            self.agent = agent
            tb = self._agent_tbs.get(agent)
            if tb is not None:
                self._base_tb = tb
        return self

    # -- attribution and budgets ------------------------------------------------------------
    def set_agent(self, name: str | None) -> None:
        """Attribute the run to agent ``name`` (and apply that agent's thinking budget)."""
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("set_agent(): the agent name must be a non-empty string")
        self.agent = name
        base = self._agent_tbs.get(name, self._default_tb) if name else self._default_tb
        self._base_tb = base

    @property
    def thinking_budget(self) -> ThinkingBudget | None:
        """The effective thinking budget. Assigning one can only lower the limits."""
        base, req = self._base_tb, self._request_tb
        if base is None:
            return req
        return base.lowered_by(req)

    @thinking_budget.setter
    def thinking_budget(self, value: ThinkingBudget | None) -> None:
        if value is not None and not isinstance(value, ThinkingBudget):
            raise TypeError("thinking_budget: expected a ThinkingBudget")
        if value is None:
            return  # removing a limit would raise it: ignored
        self._request_tb = value if self._request_tb is None else self._request_tb.lowered_by(value)

    def check_budget(self) -> None:
        """Raise :class:`BudgetExhausted` if another step or model call must not start.

        Call it before each step and each model call. The stop reason is kept in
        :attr:`stop_reason` and in the trace. After :meth:`finish` it always raises (reason
        ``"run_finished"``).
        """
        if self._closed:
            raise BudgetExhausted(RUN_FINISHED)
        tb = self.thinking_budget
        if tb is not None:
            with self._lock:
                tokens = self._in + self._out
                reason = tb.exhausted(
                    steps=self._steps,
                    tokens=tokens,
                    cost_nanos=self._nanos,
                    elapsed=self._mono() - self._t0,
                )
            if reason is not None:
                self._stop(reason)
                raise BudgetExhausted(reason)
        if self._guard is not None:
            retry = self._guard(self._nanos)
            if retry is not None:
                self._stop("budget_exhausted:budget")
                raise BudgetExhausted("budget_exhausted:budget", retry_after=retry)

    def reserve_call(
        self,
        *,
        model: str,
        input_tokens_estimate: int = 0,
        max_output_tokens: int | None = None,
        provider: str | None = None,
    ) -> CallReservation:
        """Reserve what one model call may cost on the run's hard budgets, before sending it.

        The reservation is ``input_tokens_estimate`` x input price + ``max_output_tokens`` x
        output price (a model without price, or no ``max_output_tokens``, reserves 0 for that
        part). The run's holds on every hard budget grow to its spend so far plus every call in
        flight; when that does not fit a budget, nothing is reserved and the call must not be
        sent. Settle the returned :class:`CallReservation` with the real usage (or release
        it). Estimate input tokens with :func:`estimate_tokens`.

        The thinking budget's ``max_cost`` is applied the same way (spend + calls in flight +
        this call); its other limits are checked by :meth:`check_budget` on what was used.

        Raises:
            BudgetExhausted: ``"budget_exhausted:budget"`` (with ``retry_after``) when a hard
                budget has no room for the call; ``"budget_exhausted:cost"`` when the thinking
                budget's ``max_cost`` has none; the reasons of :meth:`check_budget` (thinking
                budget, ``"run_finished"``), which runs first.
        """
        if type(model) is not str or not model:
            raise ValueError("reserve_call(): model must be a non-empty string")
        if not valid_counts(input_tokens_estimate, max_output_tokens or 0, 0, 0, 0):
            raise ValueError(
                "reserve_call(): input_tokens_estimate and max_output_tokens must be "
                "non-negative ints"
            )
        self.check_budget()
        try:
            price = self.prices.price(model, provider)
        except UnknownModelError:  # record() reports it; the call itself reserves nothing
            price = _ZERO_PRICE
        estimate = cost_nanos_of(price, input_tokens_estimate, max_output_tokens or 0)
        tb = self.thinking_budget
        cap = None if tb is None else tb.max_cost_nanos
        retry = None
        with self._lock:
            if self._closed:
                raise BudgetExhausted(RUN_FINISHED)
            over = cap is not None and self._nanos + self._pending + estimate > cap
            if not over:
                self._pending += estimate
            if not over and self._resize is not None:
                retry = self._resize(self._nanos + self._pending)
                if retry is not None:
                    self._pending -= estimate
        if over:
            self._stop("budget_exhausted:cost")
            raise BudgetExhausted("budget_exhausted:cost")
        if retry is not None:
            self._stop("budget_exhausted:budget")
            raise BudgetExhausted("budget_exhausted:budget", retry_after=retry)
        return CallReservation(self, model, estimate, input_tokens_estimate, max_output_tokens)

    async def areserve_call(
        self,
        *,
        model: str,
        input_tokens_estimate: int = 0,
        max_output_tokens: int | None = None,
        provider: str | None = None,
    ) -> CallReservation:
        """:meth:`reserve_call` without blocking the event loop: run in a worker thread when
        the budget store does I/O (Redis), directly otherwise."""
        if self._resize is not None and self._resize_blocking:
            return await asyncio.to_thread(
                self.reserve_call,
                model=model,
                input_tokens_estimate=input_tokens_estimate,
                max_output_tokens=max_output_tokens,
                provider=provider,
            )
        return self.reserve_call(
            model=model,
            input_tokens_estimate=input_tokens_estimate,
            max_output_tokens=max_output_tokens,
            provider=provider,
        )

    def _unreserve(self, nanos: int) -> None:
        with self._lock:
            self._pending -= nanos

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
                self._event({"type": "stop", "reason": reason})

    # -- recording ---------------------------------------------------------------------------
    def _event(self, event: dict[str, Any]) -> None:
        events = self._events
        if not isinstance(events, list):
            events = self._events = []
        if len(events) >= MAX_TRACE_EVENTS:
            self._dropped += 1
            return
        event["ts"] = self._clock()
        events.append(event)

    def record(
        self,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
        provider: str | None = None,
        cost: Decimal | str | int | None = None,
        idempotency_key: str | None = None,
        cache_creation_input_tokens: int = 0,
        cache_creation_1h_input_tokens: int = 0,
        service_tier: str | None = None,
    ) -> Decimal:
        """Report one model call; returns its cost in dollars.

        ``cache_creation_1h_input_tokens`` (1-hour cache writes, priced at the model's 1-hour
        cache-write price) is a subset of ``cache_creation_input_tokens``; ``service_tier``
        names the tier the provider billed (``"priority"``, ``"flex"``, ``"batch"``...: the
        model's tier prices when the table has them, else the standard ones).

        ``input_tokens`` counts every prompt token (cache reads ``cached_input_tokens`` and
        writes ``cache_creation_input_tokens`` are subsets of it); ``reasoning_tokens`` is a
        subset of ``output_tokens``. ``cost`` overrides the price table (a provider-reported
        cost). A repeated ``idempotency_key`` is counted once (here and in the ledger).

        Raises:
            BudgetExhausted: with reason ``"run_finished"`` after :meth:`finish`: the run's
                record is frozen, so the usage is logged as an error (run id, model, tokens,
                cost) and must not be reported as metered.
        """
        if type(model) is not str or not model:
            raise ValueError("record(): model must be a non-empty string")
        if not valid_counts(
            input_tokens,
            output_tokens,
            cached_input_tokens,
            reasoning_tokens,
            cache_creation_input_tokens,
        ):
            Usage(  # raises the precise TypeError / ValueError
                input_tokens,
                output_tokens,
                cached_input_tokens=cached_input_tokens,
                reasoning_tokens=reasoning_tokens,
                cache_creation_input_tokens=cache_creation_input_tokens,
            )
            raise ValueError("record(): invalid token counts")  # pragma: no cover
        counts = (
            input_tokens,
            output_tokens,
            cached_input_tokens,
            reasoning_tokens,
            cache_creation_input_tokens,
        )
        if self._closed:  # checked again under the lock (a concurrent finish())
            self._late(model, provider, counts, None if cost is None else str(cost))
        _check_extras(cache_creation_input_tokens, cache_creation_1h_input_tokens, service_tier)
        nanos, unpriced = self._cost(
            model,
            provider,
            counts,
            cost,
            written_1h=cache_creation_1h_input_tokens,
            service_tier=service_tier,
        )
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key
        ):
            raise ValueError("record(): idempotency_key must be a non-empty string")
        with self._lock:
            if self._closed:
                self._late(model, provider, counts, nanos_to_decimal(nanos))
            if idempotency_key is not None:
                if self._keys is None:
                    self._keys = {}
                seen = self._keys.get(idempotency_key)
                if seen is not None:
                    return nanos_to_decimal(seen)
                self._keys[idempotency_key] = nanos
                event_key = "k:" + idempotency_key
            else:
                event_key = f"r:{self.run_id}:{len(self._usage)}"
            event = UsageEvent(
                event_key,
                self.run_id,
                self._clock(),
                model,
                provider,
                input_tokens,
                output_tokens,
                cached_input_tokens,
                reasoning_tokens,
                cache_creation_input_tokens,
                nanos,
            )
            if isinstance(self._usage, list):
                self._usage.append(event)
            else:
                self._usage = [event]
            self._in += input_tokens
            self._out += output_tokens
            self._cached += cached_input_tokens
            self._reasoning += reasoning_tokens
            self._nanos += nanos
            # The trace keeps the usage event itself (its dict is built when the trace is read).
            events = self._events
            if not isinstance(events, list):
                events = self._events = []
            if len(events) < MAX_TRACE_EVENTS:
                events.append(event)
            else:
                self._dropped += 1
        if unpriced is not None:
            logger.error(
                "run %s: no price for model %r; its usage (input_tokens=%d output_tokens=%d) "
                "is recorded at zero cost",
                self.run_id,
                model,
                input_tokens,
                output_tokens,
            )
            raise unpriced
        return nanos_to_decimal(nanos)

    def _cost(
        self,
        model: str,
        provider: str | None,
        counts: tuple[int, int, int, int, int],
        cost: Decimal | str | int | None,
        *,
        written_1h: int = 0,
        service_tier: str | None = None,
    ) -> tuple[int, UnknownModelError | None]:
        """The cost of one model call in nano-dollars, and the error of a model without price
        (its tokens were spent already: they are kept at zero cost, then the error raised)."""
        if cost is not None:
            if to_decimal(cost, option="record(cost=)") < 0:
                raise ValueError("record(cost=): must not be negative")
            return to_nanos(cost, option="record(cost=)"), None
        try:
            price = self.prices.price(model, provider)
        except UnknownModelError as exc:
            return cost_nanos_of(_ZERO_PRICE, *counts), exc
        return cost_nanos_of(price, *counts, written_1h=written_1h, service_tier=service_tier), None

    def _late(
        self,
        model: str,
        provider: str | None,
        counts: tuple[int, int, int, int, int],
        cost: Decimal | str | None,
    ) -> None:
        if cost is None:
            cost = "unpriced"
            if model in self.prices:
                cost = nanos_to_decimal(cost_nanos_of(self.prices.price(model, provider), *counts))
        logger.error(
            "usage reported after run %s finished (%s): model=%r provider=%r input_tokens=%d "
            "output_tokens=%d cached_input_tokens=%d reasoning_tokens=%d "
            "cache_creation_input_tokens=%d cost=%s was not metered",
            self.run_id,
            RUN_FINISHED,
            model,
            provider,
            *counts,
            cost,
        )
        raise BudgetExhausted(RUN_FINISHED)

    def record_response(
        self,
        response: Any,
        *,
        model: str | None = None,
        provider: str | None = None,
        idempotency_key: str | None = None,
    ) -> Decimal:
        """:meth:`record` the usage of an OpenAI- or Anthropic-style response (or the final
        usage chunk of a stream). Raises ``ValueError`` when it carries no usage."""
        found = usage_of(response)
        if found is None:
            raise ValueError("record_response(): the response carries no usage")
        name = model or found.model
        if not name:
            raise ValueError("record_response(): the response names no model; pass model=")
        u = found.usage
        return self.record(
            model=name,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_input_tokens=u.cached_input_tokens,
            reasoning_tokens=u.reasoning_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            provider=provider or found.provider,
            idempotency_key=idempotency_key,
        )

    def step(self, name: str, **attrs: Any) -> None:
        """Record one reasoning step (``attrs`` are kept, JSON-safe, in the trace)."""
        with self._lock:
            self._steps += 1
            self._event({"type": "step", "name": str(name), "attrs": json_safe(attrs)})

    def tool_call(
        self, name: str, *, arguments: Any = None, result: Any = None, error: Any = None
    ) -> None:
        """Record one tool call with its arguments, result or error."""
        with self._lock:
            self._tools += 1
            self._event(
                {
                    "type": "tool_call",
                    "name": str(name),
                    "arguments": json_safe(arguments),
                    "result": json_safe(result),
                    "error": None if error is None else json_safe(_error_text(error)),
                }
            )

    def annotate(self, kind: str, **attrs: Any) -> None:
        """Add a trace event of type ``kind`` that counts as no step or tool call (e.g. one HTTP
        attempt of a captured model call); ``attrs`` are kept, JSON-safe, in the trace."""
        with self._lock:
            self._event({"type": str(kind), "attrs": json_safe(attrs)})

    def record_error(self, error: BaseException | str) -> None:
        """Record an error of the run (its type and message) in the trace."""
        text = _error_text(error)
        with self._lock:
            self.error = text
            self._event({"type": "error", "error": json_safe(text)})

    @property
    def totals(self) -> Totals:
        """Tokens, exact cost (``total_cost``), steps and tool calls so far."""
        with self._lock:
            return Totals(
                self._in,
                self._out,
                self._cached,
                self._reasoning,
                self._nanos,
                len(self._usage),
                self._steps,
                self._tools,
            )

    @property
    def cost_nanos(self) -> int:
        return self._nanos

    def elapsed(self) -> float:
        return self._mono() - self._t0

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`finish` has run: :meth:`record` and :meth:`check_budget` then
        raise :class:`BudgetExhausted` (``"run_finished"``)."""
        return self._closed

    def finish(self, *, status: int | None = None) -> RunRecord:
        """Freeze the run into a :class:`RunRecord` (the middleware calls this once) and close
        the meter: usage reported later is refused and logged, never silently dropped."""
        with self._lock:
            self._closed = True
            events = tuple(self._events) if self._events else ()
            if self._dropped:
                events += ({"type": "truncated", "dropped": self._dropped},)
            usage = tuple(self._usage)
            # ``tuple.__new__`` skips the NamedTuples' Python-level ``__new__``: kept, measured
            # 0.12 µs instead of 0.46 µs per record, each 2.2 % of the full stack's 16 µs per
            # request (``python -m timeit``; ``benchmarks/bench_metering.py --cpu``).
            if usage:
                totals = _new_tuple(
                    Totals,
                    (
                        self._in,
                        self._out,
                        self._cached,
                        self._reasoning,
                        self._nanos,
                        len(usage),
                        self._steps,
                        self._tools,
                    ),
                )
            elif self._steps or self._tools:
                totals = Totals(steps=self._steps, tool_calls=self._tools)
            else:
                totals = _NO_TOTALS  # nothing recorded: one shared (immutable) value
            return _new_tuple(
                RunRecord,
                (
                    self.run_id,
                    self.scope,
                    self.agent,
                    self.started_at,
                    self._clock(),
                    status,
                    self.stop_reason,
                    self.error,
                    totals,
                    usage,
                    events,
                    self.path,
                ),
            )


def _error_text(error: object) -> str:
    if isinstance(error, BaseException):
        text = str(error)
        return type(error).__name__ + (f": {text}" if text else "")
    return str(error)


def _check_extras(written: int, written_1h: int, service_tier: str | None) -> None:
    """Validate ``record()``'s 1-hour cache writes and service tier (as :class:`Usage` does)."""
    if type(written_1h) is not int:
        raise TypeError("record(): cache_creation_1h_input_tokens must be an int")
    if not 0 <= written_1h <= written:
        raise ValueError(
            "record(): cache_creation_1h_input_tokens must be >= 0 and cannot exceed "
            "cache_creation_input_tokens"
        )
    if service_tier is not None and not isinstance(service_tier, str):
        raise TypeError("record(): service_tier must be a str or None")
