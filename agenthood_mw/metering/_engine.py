"""The metering engine shared by the ASGI and WSGI shells: options, admission, settlement.

The shells only move bytes: they ask the engine whether a request may run (budgets and the
token rate), open a :class:`Meter`, and hand the finished meter back.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, ParamSpec, TypeVar

from agenthood_mw._core.budgets import BudgetRule, Hold, Refusal
from agenthood_mw._core.keys import token_rate_key
from agenthood_mw._core.pricing import format_nanos, seconds_ceil
from agenthood_mw._core.scope import ANONYMOUS_TENANT, MemoryScope
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw.metering import _background
from agenthood_mw.metering._alerts import SpikeMonitor
from agenthood_mw.metering._budget_store import MemoryBudgetStore, budget_store_from_url
from agenthood_mw.metering._ledger import Ledger, subject_of
from agenthood_mw.metering._ledger_sql import ledger_from_url
from agenthood_mw.metering._meter import Meter
from agenthood_mw.metering._otel import make_exporter
from agenthood_mw.metering._recorder import Recorder
from agenthood_mw.metering._records import RunRecord
from agenthood_mw.metering._settings import MeteringSettings, settings_from_options
from agenthood_mw.metering._traces import TraceStore, trace_store_from_url

__all__ = ["ANONYMOUS_SCOPE", "RESERVED_TENANT_ERROR", "Metering", "agent_from_path"]

logger = logging.getLogger("agenthood_mw.metering")

P = ParamSpec("P")
R = TypeVar("R")

#: Where requests without an authenticated identity are metered. Its tenant is reserved:
#: ``MemoryScope.for_identity`` refuses identities claiming it, so no token shares this scope.
ANONYMOUS_SCOPE = MemoryScope.operator(user="anonymous", tenant=ANONYMOUS_TENANT)

#: Identities that claim the reserved anonymous tenant are refused before anything is metered.
RESERVED_TENANT_ERROR = HTTPError(
    403,
    "reserved_tenant",
    f"the tenant {ANONYMOUS_TENANT!r} is reserved for unauthenticated requests",
)


def agent_from_path(path: str) -> str | None:
    """``{name}`` of a path ending in ``/agents/{name}/run``, else ``None``."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-3] == "agents" and parts[-1] == "run" and parts[-2]:
        return parts[-2]
    return None


_OPTIONS = frozenset(inspect.signature(settings_from_options).parameters)

#: Bound of the scope cache (one entry per (tenant, user)) and of the path -> agent cache.
_MAX_SCOPES = 10_000
_MAX_PATHS = 1024


class Metering:
    """The metering of requests, shared by the ASGI and WSGI ``CostMeterMiddleware``.

    Takes the middleware's keywords (everything but ``app`` and ``agent``), validates them
    once (:class:`MeteringSettings`) and opens the ledger, trace store, budget store and token
    limiter. Build it yourself to keep a handle on it when a framework builds the middleware
    (Starlette's ``app.add_middleware(CostMeterMiddleware, metering=metering)``): then
    ``await metering.aflush()``, ``metering.ledger`` and ``metering.traces`` are yours.

    Keywords: those of ``CostMeterMiddleware`` but ``app`` and ``agent`` (``prices`` is
    required), validated by :func:`~agenthood_mw.metering._settings.settings_from_options`.

    A shell meters a request with exactly two calls: :meth:`begin` (or :meth:`begin_async`)
    -- admission on the spend budgets, the token rate, then a new :class:`Meter` -- and
    :meth:`end` (or :meth:`end_async`) -- budgets settled to the actual cost, the run handed
    to the ledger, its tokens counted in the token rate.
    """

    def __init__(self, **options: Any) -> None:
        for name in options:
            if name not in _OPTIONS:
                raise TypeError(f"{name}: not an option of Metering (see CostMeterMiddleware)")
        if "prices" not in options:
            raise TypeError("prices: required (a PriceTable or a mapping of model prices)")
        settings = settings_from_options(**options)
        self.settings = settings
        self.agents = settings.agents
        self.prices = settings.prices
        self.clock = settings.clock
        self.budgets = settings.budgets
        self.thinking_budget = settings.thinking_budget
        self.thinking_budgets = settings.thinking_budgets
        self.cost_header = settings.cost_header
        #: The unmetered paths (``None`` when there are none: one test per request, not a call).
        self.exempt = settings.exempt if settings.exempt else None
        self._scopes: dict[tuple[str | None, str], MemoryScope] = {}
        self._path_agents: dict[str, str | None] = {}
        self._owned: list[Ledger | TraceStore] = []
        self.ledger, self.traces = self._open_stores(settings)
        try:
            self.budget_store = budget_store_from_url(
                settings.budget_storage,
                [b.rule(i) for i, b in enumerate(settings.budgets)],
                ttl=settings.reservation_ttl,
                key_prefix=settings.budget_key_prefix,
                max_accounts=settings.max_budget_accounts,
            )
            self.limiter: Any = _token_limiter(settings.tokens_per_minute, settings.token_storage)
            exporter = make_exporter(settings.opentelemetry)
        except BaseException:
            self._close_owned()
            raise
        sinks = settings.alert_sinks
        self.monitor = (
            SpikeMonitor(self.ledger, settings.spike_rule, sinks, clock=self.clock)
            if sinks
            else None
        )
        self.recorder = Recorder(self.ledger, self.traces, self.monitor, exporter)
        # No spend budget and no token rate: nothing to admit, reserve or settle.
        self._plain = not self.budgets and self.limiter is None
        #: ``True`` when :meth:`begin` / :meth:`end` may wait on I/O (a token rate, a Redis
        #: budget store, a database ledger seeding budgets): an ASGI shell then awaits
        #: :meth:`begin_async` / :meth:`end_async`; otherwise it calls :meth:`begin` /
        #: :meth:`end`, which then never block (no coroutines: 0.6-1.0 µs less per request).
        self.awaits = self.limiter is not None or (
            bool(self.budgets) and (self.budget_store.blocking or self.ledger.blocking)
        )

    def _open_stores(self, settings: MeteringSettings) -> tuple[Ledger, TraceStore | None]:
        ledger = settings.ledger
        if isinstance(ledger, str):
            ledger = ledger_from_url(ledger)
            self._owned.append(ledger)
        traces = settings.traces
        if isinstance(traces, str):
            try:
                traces = trace_store_from_url(traces, retention=settings.trace_retention)
            except BaseException:
                self._close_owned()
                raise
            self._owned.append(traces)
        return ledger, traces

    def _close_owned(self) -> None:
        for store in self._owned:
            store.close_sync()
        self._owned.clear()

    # -- identity and attribution ------------------------------------------------------------
    def scope_for(self, identity: object) -> MemoryScope | None:
        """The caller's scope (memoised per (tenant, user): minting validates every time).

        Unauthenticated requests get :data:`ANONYMOUS_SCOPE`; ``None`` means the identity
        claims the reserved anonymous tenant and must be refused (:data:`RESERVED_TENANT_ERROR`).
        """
        if not isinstance(identity, Identity) or not identity.authenticated:
            return ANONYMOUS_SCOPE
        key = (identity.tenant, identity.user_id)
        scope = self._scopes.get(key)
        if scope is None:
            if identity.tenant == ANONYMOUS_TENANT:
                return None
            scope = MemoryScope.for_identity(identity)
            if len(self._scopes) >= _MAX_SCOPES:
                self._scopes.clear()
            self._scopes[key] = scope
        return scope

    def agent_of_path(self, path: str) -> str | None:
        """The agent of a request path by the default rule (``/agents/{name}/run``, then
        :meth:`agent_for`), memoised per path."""
        cache = self._path_agents
        try:
            return cache[path]
        except KeyError:
            agent = self.agent_for(agent_from_path(path))
            if len(cache) >= _MAX_PATHS:
                cache.clear()
            cache[path] = agent
            return agent

    def agent_for(self, name: object) -> str | None:
        """The agent a request is attributed to: ``name`` when the app declares it (``agents=``;
        any non-empty name when no list was given), else ``None``."""
        if type(name) is not str or not name:
            return None
        agents = self.agents
        return name if agents is None or name in agents else None

    def _subjects(self, scope: MemoryScope, agent: str | None) -> dict[str, str | None]:
        return {p: subject_of(p, scope, agent) for p in ("user", "agent", "tenant")}

    # -- budgets -------------------------------------------------------------------------------
    def _seed(self, rule: BudgetRule, subject: str, window_start: float) -> int:
        """Committed spend of a window seen for the first time, read from the ledger."""
        return self.ledger.spend_between(rule.per, subject, window_start, float("inf"))

    def admit(self, scope: MemoryScope, agent: str | None) -> tuple[Hold, ...] | HTTPError:
        """Reserve on every applicable budget, or the 429 to send (blocking when the budget
        store or the first-time ledger seed does I/O; see :meth:`admit_async`)."""
        if not self.budgets:
            return ()
        subjects = self._subjects(scope, agent)
        decision = self.budget_store.admit(subjects, self.clock(), self._seed)
        if isinstance(decision, Refusal):
            return self._budget_error(decision)
        return decision.holds

    async def admit_async(
        self, scope: MemoryScope, agent: str | None
    ) -> tuple[Hold, ...] | HTTPError:
        """:meth:`admit` without blocking the event loop on I/O."""
        if not self.budgets:
            return ()
        store = self.budget_store
        if store.blocking or (
            self.ledger.blocking
            and isinstance(store, MemoryBudgetStore)
            and store.missing(self._subjects(scope, agent), self.clock())
        ):
            return await asyncio.to_thread(self.admit, scope, agent)
        return self.admit(scope, agent)

    def release(self, holds: tuple[Hold, ...]) -> None:
        """Drop reservations of a request refused after admission (costs nothing)."""
        if holds:
            self.budget_store.settle(holds, 0)

    def _budget_error(self, refusal: Refusal) -> HTTPError:
        rule = refusal.rule
        budget = self.budgets[rule.index]
        retry = seconds_ceil(refusal.retry_after)
        return HTTPError(
            429,
            "budget_exceeded",
            f"the {rule.per} spend budget of {format_nanos(rule.limit)} per "
            f"{budget.window} is used up",
            headers=(("retry-after", str(retry)),),
            extra={
                "budget": {
                    "per": rule.per,
                    "limit": format_nanos(rule.limit),
                    "window": str(budget.window),
                    "retryAfter": retry,
                }
            },
        )

    def _guard(self, holds: tuple[Hold, ...]) -> Callable[[int], float | None]:
        def guard(spent: int) -> float | None:
            refusal = self.budget_store.extend(holds, spent, self.clock())
            return None if refusal is None else refusal.retry_after

        return guard

    def _resizer(self, holds: tuple[Hold, ...]) -> Callable[[int], float | None]:
        def resize(amount: int) -> float | None:
            refusal = self.budget_store.resize(holds, amount, self.clock())
            return None if refusal is None else refusal.retry_after

        return resize

    # -- tokens per minute ---------------------------------------------------------------------
    def tpm_key(self, scope: MemoryScope) -> str | None:
        return None if self.limiter is None else token_rate_key(scope)

    def _tpm_error(self, decision: Any) -> HTTPError:
        retry = seconds_ceil(decision.retry_after)
        return HTTPError(
            429,
            "token_rate_exceeded",
            f"the limit of {self.limiter.policy.capacity} tokens per minute is used up",
            headers=(("retry-after", str(retry)),),
        )

    async def tpm_admit(self, key: str) -> HTTPError | None:
        """The 429 to send when the user's token bucket is empty. Fails open (with a logged
        warning) when the limiter's storage is unreachable: spend budgets still apply."""
        try:
            decision = await self.limiter.hit(key, 1)
        except Exception as exc:
            logger.warning("token-rate storage unavailable (%s); request admitted", exc)
            return None
        return None if decision.allowed else self._tpm_error(decision)

    def tpm_admit_sync(self, key: str) -> HTTPError | None:
        try:
            decision = self.limiter.hit_sync(key, 1)
        except Exception as exc:
            logger.warning("token-rate storage unavailable (%s); request admitted", exc)
            return None
        return None if decision.allowed else self._tpm_error(decision)

    async def tpm_charge(self, key: str, tokens: int) -> None:
        """Count a finished run's tokens (the admission already counted one).

        When the bucket cannot hold them all it is filled up (the rest is dropped), so the
        next request of that user waits for the bucket to drain.
        """
        try:
            if tokens > 1:
                decision = await self.limiter.hit(key, tokens - 1)
                if not decision.allowed and decision.remaining > 0:
                    await self.limiter.hit(key, decision.remaining)
        except Exception:
            logger.exception("charging tokens to the token-rate limiter failed")

    def tpm_charge_sync(self, key: str, tokens: int) -> None:
        try:
            if tokens > 1:
                decision = self.limiter.hit_sync(key, tokens - 1)
                if not decision.allowed and decision.remaining > 0:
                    self.limiter.hit_sync(key, decision.remaining)
        except Exception:
            logger.exception("charging tokens to the token-rate limiter failed")

    # -- one request: begin ... end ---------------------------------------------------------
    def begin(
        self, identity: object, path: str | None, agent: object, *, scope: MemoryScope | None = None
    ) -> Meter | HTTPError:
        """Admit a request and open its :class:`Meter`, or the error response to send.

        ``identity``: the request's :class:`~agenthood_mw.Identity` (anything else is
        metered as anonymous); ``path``: its route path (kept in the run); ``agent``: the agent
        name the shell resolved (kept only when :meth:`agent_for` accepts it). In order:
        the reserved tenant is refused (403), the spend budgets reserve (429
        ``budget_exceeded``), the token rate admits (429 ``token_rate_exceeded``; the
        reservations are dropped), then the meter opens. Blocking when a store does I/O
        (WSGI); ASGI shells call :meth:`begin_async`. ``scope``: meter the run under this
        scope instead of the identity's (an operator scope; see :meth:`run`).
        """
        if scope is None:
            scope = self.scope_for(identity)
        if scope is None:
            return RESERVED_TENANT_ERROR
        agent = self.agent_for(agent)
        if self._plain:
            return self._open(scope, agent, (), path)
        holds = self.admit(scope, agent)
        if isinstance(holds, HTTPError):
            return holds
        key = self.tpm_key(scope)
        if key is not None:
            error = self.tpm_admit_sync(key)
            if error is not None:
                self.release(holds)
                return error
        return self._open(scope, agent, holds, path)

    async def begin_async(
        self, identity: object, path: str | None, agent: object, *, scope: MemoryScope | None = None
    ) -> Meter | HTTPError:
        """:meth:`begin` without blocking the event loop on I/O."""
        if scope is None:
            scope = self.scope_for(identity)
        if scope is None:
            return RESERVED_TENANT_ERROR
        agent = self.agent_for(agent)
        if self._plain:
            return self._open(scope, agent, (), path)
        holds = await self.admit_async(scope, agent)
        if isinstance(holds, HTTPError):
            return holds
        key = self.tpm_key(scope)
        if key is not None:
            error = await self.tpm_admit(key)
            if error is not None:
                if self.budget_store.blocking:
                    await asyncio.to_thread(self.release, holds)
                else:
                    self.release(holds)
                return error
        return self._open(scope, agent, holds, path)

    def end(self, meter: Meter, status: int | None) -> RunRecord:
        """Finish the run of :meth:`begin`: settle its reservations to the actual cost, hand
        the run to the ledger (durable on return when the ledger is) and count its tokens
        in the token rate. Call it once, before the response's last byte is handed over."""
        run = self.settle(meter, status)
        if self.limiter is not None:
            self.tpm_charge_sync(self.tpm_key(meter.scope) or "", run.totals.total_tokens)
        return run

    async def end_async(self, meter: Meter, status: int | None) -> RunRecord:
        """:meth:`end` without blocking the event loop on I/O."""
        if meter._holds and self.budget_store.blocking:
            # Completes in its thread even if this task is being cancelled.
            run = await asyncio.to_thread(self.settle, meter, status)
        else:
            run = self.settle(meter, status)
        if self.limiter is not None:
            await self.tpm_charge(self.tpm_key(meter.scope) or "", run.totals.total_tokens)
        return run

    def _open(
        self, scope: MemoryScope, agent: str | None, holds: tuple[Hold, ...], path: str | None
    ) -> Meter:
        meter = Meter._open(
            self.prices,
            scope,
            agent,
            self.thinking_budget,
            self.thinking_budgets,
            self.clock,
            self._guard(holds) if holds else None,
            path,
        )
        if holds:
            meter._holds = holds
            meter._resize = self._resizer(holds)
            meter._resize_blocking = self.budget_store.blocking
        return meter

    def settle(self, meter: Meter, status: int | None) -> RunRecord:
        """Reconcile budgets to the actual cost and hand the run to the recorder.

        Synchronous and without awaits, so it completes even in a cancelled task.
        """
        run = meter.finish(status=status)
        holds = meter._holds
        if holds:
            try:
                self.budget_store.settle(holds, run.totals.cost_nanos)
            except Exception:  # the reservation expires on its own; the ledger has the cost
                logger.exception("settling the budget reservation failed")
        self.recorder.submit(run)
        return run

    # -- runs outside requests -------------------------------------------------------------------
    def run(
        self, identity: Identity | MemoryScope, *, agent: str | None = None
    ) -> AbstractContextManager[Meter]:
        """A metered run outside any request (a worker, a cron job, a script)::

            with metering.run(MemoryScope.operator(user="digest"), agent="nightly-digest") as m:
                ...  # current_meter() is m; model calls are charged to that scope

        ``identity``: an authenticated :class:`~agenthood_mw.Identity` or an operator
        :class:`~agenthood_mw.MemoryScope`; ``agent``: the agent name (declared in ``agents=``
        when that is set). Same admission, ledger, budgets, token rate and traces as a
        request (:meth:`begin` / :meth:`end`); a spent budget raises
        :class:`~agenthood_mw.metering.BudgetExhausted` before the block runs; an exception
        leaving the block is recorded as the run's error (usage still charged). Blocking when a
        store does I/O: coroutines use :meth:`arun`.
        """
        return _background.run(self, identity, agent=agent)

    def arun(
        self, identity: Identity | MemoryScope, *, agent: str | None = None
    ) -> AbstractAsyncContextManager[Meter]:
        """:meth:`run` for coroutines: ``async with metering.arun(identity, agent=...) as m:``."""
        return _background.arun(self, identity, agent=agent)

    def metered(
        self, *, identity: Identity | MemoryScope, agent: str | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: each call of the function (sync or async) is one :meth:`run` /
        :meth:`arun`, e.g. ``@metering.metered(identity=scope, agent="nightly-digest")``."""
        return _background.metered(self, identity=identity, agent=agent)

    # -- lifecycle -------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every finished run is in the ledger and the trace store, at most
        ``timeout`` seconds (``None``: no limit). ``True`` when everything was written,
        ``False`` when the time ran out first."""
        return self.recorder.flush(timeout)

    async def aflush(self, timeout: float | None = 30.0) -> bool:  # noqa: ASYNC109 - a bounded wait, documented
        """:meth:`flush` without blocking the event loop."""
        return await asyncio.to_thread(self.recorder.flush, timeout)

    def close(self) -> None:
        """Flush, stop the writer thread and close the stores opened here (not the ledger or
        trace store objects that were passed in)."""
        self.recorder.close()
        self.budget_store.close()
        if self.limiter is not None:
            self.limiter.close()
        self._close_owned()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)


def _token_limiter(tokens_per_minute: object, storage: str) -> Any:
    """The token-rate limiter of a validated ``tokens_per_minute`` (``None``: no limiter)."""
    if tokens_per_minute is None:
        return None
    from agenthood_mw.ratelimit import RateLimiter

    if isinstance(tokens_per_minute, RateLimiter):
        return tokens_per_minute
    try:
        return RateLimiter(window="1m", max=int(tokens_per_minute), storage=storage, name="tokens")  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        if str(exc).startswith("storage:"):
            raise type(exc)(f"token_{exc}") from None
        raise
