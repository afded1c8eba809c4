"""The metering engine shared by the ASGI and WSGI shells: options, admission, settlement.

The shells only move bytes: they ask the engine whether a request may run (budgets and the
token rate), open a :class:`Meter`, and hand the finished meter back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agenthood_mw._core.budgets import DEFAULT_MAX_ACCOUNTS, BudgetRule, Hold, Refusal
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.keys import token_rate_key
from agenthood_mw._core.paths import PathSet
from agenthood_mw._core.pricing import format_nanos, seconds_ceil
from agenthood_mw._core.scope import ANONYMOUS_TENANT, MemoryScope
from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw.metering._alerts import LoggingAlertSink, SpikeMonitor, normalise_sinks
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._budget_store import MemoryBudgetStore, budget_store_from_url
from agenthood_mw.metering._ledger import Ledger, subject_of
from agenthood_mw.metering._ledger_sql import ledger_from_url
from agenthood_mw.metering._meter import Meter
from agenthood_mw.metering._otel import make_exporter
from agenthood_mw.metering._prices import PriceTable
from agenthood_mw.metering._recorder import Recorder
from agenthood_mw.metering._records import RunRecord
from agenthood_mw.metering._traces import TraceStore, trace_store_from_url

__all__ = ["ANONYMOUS_SCOPE", "RESERVED_TENANT_ERROR", "MeteringEngine", "agent_from_path"]

logger = logging.getLogger("agenthood_mw.metering")

#: Where requests without an authenticated identity are metered. Its tenant is reserved:
#: ``MemoryScope.for_identity`` refuses identities claiming it, so no token shares this scope.
ANONYMOUS_SCOPE = MemoryScope.operator(user="anonymous", tenant=ANONYMOUS_TENANT)
_SAME_AS_LEDGER = "same-as-ledger"

#: Identities that claim the reserved anonymous tenant are refused before anything is metered.
RESERVED_TENANT_ERROR = HTTPError(
    403,
    "reserved_tenant",
    f"the tenant {ANONYMOUS_TENANT!r} is reserved for unauthenticated requests",
)


def _agent_names(agents: object) -> frozenset[str] | None:
    if agents is None:
        return None
    if isinstance(agents, str | bytes) or not isinstance(agents, Iterable):
        raise TypeError("agents: expected a collection of agent names (or None)")
    names = frozenset(agents)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError("agents: every agent name must be a non-empty string")
    return names


def agent_from_path(path: str) -> str | None:
    """``{name}`` of a path ending in ``/agents/{name}/run``, else ``None``."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-3] == "agents" and parts[-1] == "run" and parts[-2]:
        return parts[-2]
    return None


class MeteringEngine:
    """Validated options plus the shared state of one ``CostMeterMiddleware``."""

    def __init__(
        self,
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
        traces: object = _SAME_AS_LEDGER,
        trace_retention: object = "30d",
        reservation_ttl: object = "10m",
        budget_storage: str = "memory://",
        budget_key_prefix: str = "agenthood:budget:",
        cost_header: bool = True,
        exempt_paths: Iterable[str] = (),
        opentelemetry: object = False,
        clock: Callable[[], float] = time.time,
        agents: Iterable[str] | None = None,
        max_budget_accounts: int = DEFAULT_MAX_ACCOUNTS,
    ) -> None:
        self.agents = _agent_names(agents)
        if isinstance(prices, Mapping):
            prices = PriceTable(prices)
        if not isinstance(prices, PriceTable):
            raise TypeError("prices: expected a PriceTable or a mapping of model prices")
        self.prices = prices
        if not callable(clock):
            raise TypeError("clock: expected a callable returning Unix seconds")
        self.clock = clock
        self._owned: list[Ledger | TraceStore] = []
        self._scopes: dict[tuple[str | None, str], MemoryScope] = {}
        #: (identity object, its scope) of the last authenticated request (see :meth:`scope_for`).
        self.last_scope: tuple[object, MemoryScope | None] = (object(), None)
        if isinstance(ledger, Ledger):
            self.ledger = ledger
        elif isinstance(ledger, str):
            self.ledger = ledger_from_url(ledger)
            self._owned.append(self.ledger)
        else:
            raise TypeError("ledger: expected a URL ('memory://', 'sqlite:///costs.db', ...)")
        if not isinstance(budgets, Iterable) or isinstance(budgets, Budget | str | bytes):
            raise TypeError("budgets: expected a list of Budget objects")
        budget_list = list(budgets)
        if not all(isinstance(b, Budget) for b in budget_list):
            raise TypeError("budgets: every item must be an agenthood_mw.Budget")
        self.budgets = tuple(budget_list)
        if self.agents is None and any(b.per == "agent" for b in budget_list):
            raise ValueError(
                "agents: a per='agent' Budget needs agents=[...] (the agent names the app "
                "declares), so that names taken from request paths cannot mint budget accounts"
            )
        ttl = parse_duration(reservation_ttl, option="reservation_ttl")
        self.budget_store = budget_store_from_url(
            budget_storage,
            [b.rule(i) for i, b in enumerate(budget_list)],
            ttl=ttl,
            key_prefix=budget_key_prefix,
            max_accounts=max_budget_accounts,
        )
        if thinking_budget is not None and not isinstance(thinking_budget, ThinkingBudget):
            raise TypeError("thinking_budget: expected a ThinkingBudget")
        tbs = dict(thinking_budgets or {})
        for name, tb in tbs.items():
            if not isinstance(name, str) or not isinstance(tb, ThinkingBudget):
                raise TypeError(
                    "thinking_budgets: expected a mapping of agent name to ThinkingBudget"
                )
        self.thinking_budget = thinking_budget
        self.thinking_budgets = tbs
        self.limiter: Any = None
        if tokens_per_minute is not None:
            self.limiter = _token_limiter(tokens_per_minute, token_storage)
        if not isinstance(cost_header, bool):
            raise TypeError("cost_header: expected a bool")
        self.cost_header = cost_header
        self.exempt = PathSet(exempt_paths, option="exempt_paths")
        if trace_retention is not None:  # checked even when no trace store is built here
            parse_duration(trace_retention, option="trace_retention")
        if traces is _SAME_AS_LEDGER or traces == _SAME_AS_LEDGER:
            traces = ledger if isinstance(ledger, str) else "memory://"
        if traces is None or traces is False:
            self.traces: TraceStore | None = None
        elif isinstance(traces, TraceStore):
            self.traces = traces
        elif isinstance(traces, str):
            self.traces = trace_store_from_url(traces, retention=trace_retention)
            self._owned.append(self.traces)
        else:
            raise TypeError("traces: expected a URL, a TraceStore, or None to disable traces")
        if on_alert == "log":
            sinks = normalise_sinks(LoggingAlertSink())
        else:
            sinks = normalise_sinks(on_alert)
        if spike_rule is not None and not isinstance(spike_rule, SpikeRule):
            raise TypeError("spike_rule: expected a SpikeRule")
        monitor = (
            SpikeMonitor(self.ledger, spike_rule or SpikeRule(), sinks, clock=clock)
            if sinks
            else None
        )
        self.monitor = monitor
        self.recorder = Recorder(self.ledger, self.traces, monitor, make_exporter(opentelemetry))

    # -- identity and attribution ------------------------------------------------------------
    def scope_for(self, identity: object) -> MemoryScope | None:
        """The caller's scope (memoised per (tenant, user): minting validates every time).

        Unauthenticated requests get :data:`ANONYMOUS_SCOPE`; ``None`` means the identity
        claims the reserved anonymous tenant and must be refused (:data:`RESERVED_TENANT_ERROR`).
        """
        last = self.last_scope
        if identity is last[0]:
            return last[1]  # the same identity object as the previous request (auth caches it)
        if isinstance(identity, Identity) and identity.is_authenticated:
            key = (identity.tenant, identity.user_id)
            scope = self._scopes.get(key)
            if scope is None:
                if identity.tenant == ANONYMOUS_TENANT:
                    return None
                scope = MemoryScope.for_identity(identity)
                if len(self._scopes) >= 10_000:
                    self._scopes.clear()
                self._scopes[key] = scope
            # An Identity is immutable: the same object always maps to the same scope. The
            # pair is replaced in one assignment (threads see an old or a new pair, never a mix)
            # and holds a reference, so the object's id cannot be reused while it is cached.
            self.last_scope = (identity, scope)
            return scope
        return ANONYMOUS_SCOPE

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

    def _guard(self, holds: tuple[Hold, ...]) -> Callable[[int], float | None] | None:
        if not holds:
            return None

        def guard(spent: int) -> float | None:
            refusal = self.budget_store.extend(holds, spent, self.clock())
            return None if refusal is None else refusal.retry_after

        return guard

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

    # -- meters --------------------------------------------------------------------------------
    def open(
        self,
        scope: MemoryScope,
        agent: str | None,
        holds: tuple[Hold, ...],
        path: str | None,
        tpm_key: str | None,
    ) -> Meter:
        """A new meter for an admitted request holding ``holds``."""
        if not holds:
            return Meter._open(
                self.prices,
                scope,
                agent,
                self.thinking_budget,
                self.thinking_budgets,
                self.clock,
                None,
                path,
            )
        meter = Meter._open(
            self.prices,
            scope,
            agent,
            self.thinking_budget,
            self.thinking_budgets,
            self.clock,
            self._guard(holds),
            path,
        )
        meter._holds = holds
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

    @staticmethod
    def cost_text(meter: Meter) -> bytes:
        return format_nanos(meter.cost_nanos).encode()

    # -- lifecycle -------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every finished run is written."""
        return self.recorder.flush(timeout)

    def close_sync(self) -> None:
        self.recorder.close()
        self.budget_store.close()
        if self.limiter is not None:
            self.limiter.close()
        for store in self._owned:
            store.close_sync()


def _token_limiter(tokens_per_minute: object, storage: str) -> Any:
    from agenthood_mw.ratelimit import RateLimiter

    if isinstance(tokens_per_minute, RateLimiter):
        return tokens_per_minute
    if (
        isinstance(tokens_per_minute, bool)
        or not isinstance(tokens_per_minute, int)
        or tokens_per_minute < 1
    ):
        raise ValueError("tokens_per_minute: expected a positive int (or a RateLimiter)")
    try:
        return RateLimiter(window="1m", max=tokens_per_minute, storage=storage, name="tokens")
    except (TypeError, ValueError) as exc:
        if str(exc).startswith("storage:"):
            raise type(exc)(f"token_{exc}") from None
        raise
