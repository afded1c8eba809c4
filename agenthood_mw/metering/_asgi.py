"""``CostMeterMiddleware`` for ASGI apps (pure ASGI; never ``BaseHTTPMiddleware``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthood_mw._asgi import add_headers, route_path, send_error
from agenthood_mw._core.budgets import Hold
from agenthood_mw._core.pricing import format_nanos
from agenthood_mw._errors import HTTPError
from agenthood_mw.metering._engine import (
    RESERVED_TENANT_ERROR,
    agent_from_path,
)
from agenthood_mw.metering._meter import BudgetExhausted, Meter, _current
from agenthood_mw.metering._shell import MeterShell

__all__ = ["CostMeterMiddleware"]

_UNSEEN: Any = object()
_AGENT_CACHE_SIZE = 1024
RUN_ID_HEADER = b"x-agenthood-run-id"
COST_HEADER = b"x-agenthood-cost"


def _default_agent(scope: Scope) -> str | None:
    return agent_from_path(route_path(scope))


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


class CostMeterMiddleware(MeterShell):
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
        agent: callable ``scope -> name | None``; default: ``{name}`` of ``/agents/{name}/run``
            (the path relative to the mount point, ``root_path`` removed).
        agents: the agent names the app declares. A resolved name outside this list is metered
            with ``agent=None`` (no per-agent budget account, spend or thinking budget), so
            made-up names in request paths cannot mint accounts. Required for
            ``Budget(per="agent")``; ``None`` (default) attributes any resolved name.
        max_budget_accounts: bound of the in-memory budget book (least recently used idle
            accounts are evicted and re-seeded from the ledger when needed again).
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

    app: ASGIApp

    def _builtin_agent(self) -> Callable[[Any], str | None]:
        return _default_agent

    def _setup(self) -> None:
        # ``None`` when there are none: ``PathSet.__bool__`` is a Python call per request.
        self._exempt = self.engine.exempt if self.engine.exempt else None
        # route path -> resolved agent of the default resolver (bounded; paths repeat).
        self._agent_cache: dict[str, str | None] = {}
        engine = self.engine
        # No spend budget and no token rate: nothing to admit, reserve or settle.
        self._plain = not engine.budgets and engine.limiter is None

    async def flush(self) -> None:
        """Wait until every finished run is in the ledger and trace store."""
        await asyncio.to_thread(self.engine.flush)

    async def close(self) -> None:
        """Flush, stop the writer thread and close the stores this middleware opened."""
        await asyncio.to_thread(self.engine.close_sync)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                receive = self._lifespan_receive(receive)
            await self.app(scope, receive, send)
            return
        await self._handle(scope, receive, send, ())

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, outer: tuple[tuple[bytes, bytes], ...]
    ) -> None:
        """Meter one HTTP or websocket request.

        ``outer``: headers an enclosing agenthood layer adds to every response of this request
        (a ``RateLimitMiddleware`` directly around this one hands its headers here instead of
        wrapping ``send`` a second time). They follow this layer's own headers, in the order
        the two wrappers would have produced; error responses sent from here carry them too.
        """
        path = route_path(scope) if scope.get("root_path") else scope.get("path", "")
        if self._exempt is not None and path in self._exempt:
            await self.app(scope, receive, add_headers(send, outer))
            return
        engine = self.engine
        user = scope.get("user")
        last = engine.last_scope
        mscope = last[1] if user is last[0] else engine.scope_for(user)
        if mscope is None:
            await send_error(scope, add_headers(send, outer), RESERVED_TENANT_ERROR)
            return
        if self._custom_agent:
            agent = engine.agent_for(self._agent(scope))
        else:
            cache = self._agent_cache
            agent = cache.get(path, _UNSEEN)
            if agent is _UNSEEN:
                agent = engine.agent_for(agent_from_path(path))
                if len(cache) >= _AGENT_CACHE_SIZE:
                    cache.clear()
                cache[path] = agent
        holds: tuple[Hold, ...] = ()
        tpm_key = None
        if self._plain:
            meter = Meter._open(
                engine.prices,
                mscope,
                agent,
                engine.thinking_budget,
                engine.thinking_budgets,
                engine.clock,
                None,
                path,
            )
        else:
            if engine.budgets:
                admitted = await engine.admit_async(mscope, agent)
                if isinstance(admitted, HTTPError):
                    await send_error(scope, add_headers(send, outer), admitted)
                    return
                holds = admitted
            tpm_key = engine.tpm_key(mscope)
            if tpm_key is not None:
                error = await engine.tpm_admit(tpm_key)
                if error is not None:
                    if engine.budget_store.blocking:
                        await asyncio.to_thread(engine.release, holds)
                    else:
                        engine.release(holds)
                    await send_error(scope, add_headers(send, outer), error)
                    return
            meter = engine.open(mscope, agent, holds, path, tpm_key)
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        shared: dict[str, Any] | None = state.get("agenthood")
        if shared is None:
            shared = state["agenthood"] = {}
        shared["meter"] = meter
        shared["run_id"] = run_id = meter.run_id
        run_header = (RUN_ID_HEADER, run_id.encode())
        status: int | None = None
        started = False
        cost_header = engine.cost_header

        # A plain function returning ``send``'s awaitable: no coroutine frame of its own per
        # message (ASGI's ``send`` is any callable returning an awaitable).
        def send_wrapper(message: Message) -> Awaitable[None]:
            nonlocal status, started
            mtype = message["type"]
            if mtype == "http.response.start":
                started = True
                status = message["status"]
                # A new message and a new header list: the app's own message dict and header
                # list are never mutated (an app may send one prebuilt dict on every request).
                if cost_header:
                    nanos = meter._nanos
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", ()),
                            run_header,
                            (COST_HEADER, format_nanos(nanos).encode() if nanos else b"0"),
                            *outer,
                        ],
                    }
                else:
                    message = {
                        **message,
                        "headers": [*message.get("headers", ()), run_header, *outer],
                    }
            elif mtype == "websocket.accept":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), run_header]}
            elif mtype == "websocket.http.response.start":
                started = True
                status = message["status"]
            return send(message)

        token = _current.set(meter)
        try:
            await self.app(scope, receive, send_wrapper)
        except BudgetExhausted as exc:
            if started:
                raise
            error = stop_error(exc)
            status = error.status
            await send_error(scope, add_headers(send, outer), error)
        except BaseException as exc:
            meter.record_error(exc)
            raise
        finally:
            _current.reset(token)
            if not holds:  # ``engine.settle`` without budgets to reconcile
                run = meter.finish(status=status)
                engine.recorder.submit(run)
            elif engine.budget_store.blocking:
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
