"""``CostMeterMiddleware`` for ASGI apps (pure ASGI; never ``BaseHTTPMiddleware``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthood_mw._asgi import agenthood_state, send_error
from agenthood_mw._core.budgets import Hold
from agenthood_mw._core.pricing import format_nanos
from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw._errors import HTTPError
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._engine import _SAME_AS_LEDGER, MeteringEngine, agent_from_path
from agenthood_mw.metering._meter import BudgetExhausted, _current

__all__ = ["CostMeterMiddleware"]

RUN_ID_HEADER = b"x-agenthood-run-id"
COST_HEADER = b"x-agenthood-cost"


def _default_agent(scope: Scope) -> str | None:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return agent_from_path(path)


def stop_error(exc: BudgetExhausted) -> HTTPError:
    """The response for a ``BudgetExhausted`` that escaped the app before it responded."""
    if exc.retry_after is not None:
        retry = max(1, int(exc.retry_after + 0.999))
        return HTTPError(
            429,
            "budget_exceeded",
            "the spend budget ran out during the run",
            headers=(("retry-after", str(retry)),),
            extra={"stopReason": exc.reason},
        )
    return HTTPError(
        422,
        "budget_exhausted",
        "the run stopped: its thinking budget is exhausted",
        extra={"stopReason": exc.reason},
    )


class CostMeterMiddleware:
    """Meters the cost of every request; enforces spend budgets and token rates.

    One :class:`~agenthood_mw.metering.Meter` per request, reachable as
    ``current_meter()`` and ``scope["state"]["agenthood"]["meter"]`` (run id under
    ``"run_id"`` and in the ``X-Agenthood-Run-Id`` response header). When the request ends --
    also on errors, client disconnects and streamed bodies -- one run record and its usage
    events go to the ledger, attributed to the user (``scope["user"]``), tenant, agent and model.
    See ``docs/cost-metering.md``.

    Args:
        app: the wrapped ASGI app.
        prices: a :class:`~agenthood_mw.PriceTable` (or a mapping accepted by it).
        ledger: ``"memory://"``, ``"sqlite:///costs.db"``, ``"postgresql://...[?schema=x]"`` or
            a ledger object.
        budgets: hard :class:`~agenthood_mw.Budget` limits, refused with 429 before the app runs.
        on_alert: callable (or list) receiving each spike alert; ``"log"`` (default) logs them,
            ``None`` disables spike checks. ``spike_rule`` tunes the rule.
        tokens_per_minute: per-user token rate (an int, or a ``RateLimiter``), stored in
            ``token_storage`` (``memory://`` or ``redis://...``).
        agent: callable ``scope -> name | None``; default: ``{name}`` of ``/agents/{name}/run``.
        thinking_budget: default :class:`~agenthood_mw.ThinkingBudget` of every run;
            ``thinking_budgets`` maps agent names to their own.
        traces: trace store URL or object (default: the ledger's URL); ``None`` disables.
        trace_retention: how long traces are kept (default ``"30d"``).
        reservation_ttl: lifetime of a budget reservation (default ``"10m"``).
        budget_storage: where budget counters live: ``"memory://"`` (per process, default) or
            ``"redis://..."`` (shared by every worker); keys start with ``budget_key_prefix``.
        cost_header: add ``X-Agenthood-Cost`` (cost recorded when headers are sent).
        exempt_paths: paths passed through unmetered (``"/health"``, ``"/static/*"``).
        opentelemetry: ``True`` (global tracer) or a ``Tracer`` to export runs as spans.
        clock: Unix-seconds clock (tests).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        prices: object,
        ledger: object = "memory://",
        budgets: Iterable[Budget] = (),
        on_alert: object = "log",
        spike_rule: SpikeRule | None = None,
        tokens_per_minute: object = None,
        token_storage: str = "memory://",  # noqa: S107 - a URL
        agent: Callable[[Scope], str | None] | None = None,
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
        clock: Callable[[], float] | None = None,
    ) -> None:
        if agent is not None and not callable(agent):
            raise TypeError("agent: expected a callable taking the ASGI scope")
        self.app = app
        self._agent = agent or _default_agent
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        self.engine = MeteringEngine(
            prices=prices,
            ledger=ledger,
            budgets=budgets,
            on_alert=on_alert,
            spike_rule=spike_rule,
            tokens_per_minute=tokens_per_minute,
            token_storage=token_storage,
            thinking_budget=thinking_budget,
            thinking_budgets=thinking_budgets,
            traces=traces,
            trace_retention=trace_retention,
            reservation_ttl=reservation_ttl,
            budget_storage=budget_storage,
            budget_key_prefix=budget_key_prefix,
            cost_header=cost_header,
            exempt_paths=exempt_paths,
            opentelemetry=opentelemetry,
            **extra,
        )
        self._exempt = self.engine.exempt

    @property
    def ledger(self) -> Any:
        """The ledger runs are written to."""
        return self.engine.ledger

    @property
    def traces(self) -> Any:
        """The trace store (``None`` when disabled)."""
        return self.engine.traces

    async def flush(self) -> None:
        """Wait until every finished run is in the ledger and trace store."""
        await asyncio.to_thread(self.engine.flush)

    async def close(self) -> None:
        """Flush, stop the writer thread and close the stores this middleware opened."""
        await asyncio.to_thread(self.engine.close_sync)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind not in ("http", "websocket") or (
            self._exempt and scope.get("path", "") in self._exempt
        ):
            await self.app(scope, receive, send)
            return
        engine = self.engine
        mscope = engine.scope_for(scope.get("user"))
        agent = self._agent(scope)
        holds: tuple[Hold, ...] = ()
        if engine.budgets:
            admitted = await engine.admit_async(mscope, agent)
            if isinstance(admitted, HTTPError):
                await send_error(scope, send, admitted)
                return
            holds = admitted
        tpm_key = None
        if engine.limiter is not None:
            tpm_key = "tpm:" + mscope.storage_key
            error = await engine.tpm_admit(tpm_key)
            if error is not None:
                if engine.budget_store.blocking:
                    await asyncio.to_thread(engine.release, holds)
                else:
                    engine.release(holds)
                await send_error(scope, send, error)
                return
        meter = engine.open(mscope, agent, holds, scope.get("path"), tpm_key)
        state = agenthood_state(scope)
        state["meter"] = meter
        state["run_id"] = meter.run_id
        run_header = (RUN_ID_HEADER, meter.run_id.encode())
        status: int | None = None
        started = False
        cost_header = engine.cost_header

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            mtype = message["type"]
            if mtype == "http.response.start":
                started = True
                status = message["status"]
                headers = [*message.get("headers", ()), run_header]
                if cost_header:
                    headers.append((COST_HEADER, format_nanos(meter.cost_nanos).encode()))
                message = {**message, "headers": headers}
            elif mtype == "websocket.accept":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), run_header]}
            elif mtype == "websocket.http.response.start":
                started = True
                status = message["status"]
            await send(message)

        token = _current.set(meter)
        try:
            await self.app(scope, receive, send_wrapper)
        except BudgetExhausted as exc:
            if started:
                raise
            error = stop_error(exc)
            status = error.status
            await send_error(scope, send, error)
        except BaseException as exc:
            meter.record_error(exc)
            raise
        finally:
            _current.reset(token)
            if holds and engine.budget_store.blocking:
                # Completes in its thread even if this task is being cancelled.
                run = await asyncio.to_thread(engine.settle, meter, status)
            else:
                run = engine.settle(meter, status)
            if tpm_key is not None:
                await engine.tpm_charge(tpm_key, run.totals.total_tokens)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                await asyncio.to_thread(self.engine.flush)
            return message

        return wrapped
