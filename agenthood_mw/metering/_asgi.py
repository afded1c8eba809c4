"""``CostMeterMiddleware`` for ASGI apps (pure ASGI; never ``BaseHTTPMiddleware``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthood_mw._asgi import agenthood_state, route_path, send_error
from agenthood_mw._core.pricing import format_nanos
from agenthood_mw._errors import HTTPError
from agenthood_mw.metering._engine import Metering
from agenthood_mw.metering._meter import BudgetExhausted, Meter, _current
from agenthood_mw.metering._shell import MeterShell

__all__ = ["CostMeterMiddleware"]

logger = logging.getLogger("agenthood_mw.metering")
RUN_ID_HEADER = b"x-agenthood-run-id"
COST_HEADER = b"x-agenthood-cost"


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
        metering: a :class:`~agenthood_mw.metering.Metering` built beforehand, instead of the
            options below (``agent`` excepted): the handle to flush, read the ledger and the
            traces when a framework builds the middleware (``app.add_middleware(...)``).
        prices: a :class:`~agenthood_mw.PriceTable` (or a mapping accepted by it); required
            unless ``metering`` is given.
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

    async def flush(self, timeout: float | None = 30.0) -> bool:  # noqa: ASYNC109 - a bounded wait, documented
        """Wait until every finished run is in the ledger and the trace store.

        Waits at most ``timeout`` seconds (``None``: without limit). Returns ``True`` when
        everything was written, ``False`` when the time ran out first (the runs are still
        being written).
        """
        return await self.metering.aflush(timeout)

    async def close(self) -> None:
        """Flush, stop the writer thread and close the stores this middleware opened (a
        ``metering=`` object passed in is only flushed: its owner closes it)."""
        if self._owns_metering:
            await self.metering.aclose()
        else:
            await self.metering.aflush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                receive = self._lifespan_receive(receive)
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        metering = self.metering
        exempt = metering.exempt
        if exempt is not None and path in exempt:
            await self.app(scope, receive, send)
            return
        agent = metering.agent_of_path(path) if self._agent is None else self._agent(scope)
        # Plain calls when the engine never waits on I/O: measured 0.6-1.0 µs per request
        # (4-6 % of the full stack) below awaiting the coroutines (in-process A/B, CPU time).
        if metering.awaits:
            meter = await metering.begin_async(scope.get("user"), path, agent)
        else:
            meter = metering.begin(scope.get("user"), path, agent)
        if isinstance(meter, HTTPError):
            await send_error(scope, send, meter)
            return
        shared = agenthood_state(scope)
        shared["meter"] = meter
        shared["run_id"] = meter.run_id
        exchange = _Exchange(metering, meter, send)
        token = _current.set(meter)
        try:
            await self.app(scope, receive, exchange.send)
        except BudgetExhausted as exc:
            if exchange.started:
                raise
            error = stop_error(exc)
            await exchange.end(error.status)
            await send_error(scope, send, error)
        except BaseException as exc:
            if not exchange.ended:  # else the run is over (a 5xx recorded it, see _Exchange)
                meter.record_error(exc)
            raise
        finally:
            _current.reset(token)
            if not exchange.ended:
                await exchange.end(exchange.status)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown" and not await self.metering.aflush():
                logger.warning("shutdown: runs still being written after 30 s of flushing")
            return message

        return wrapped


class _Exchange:
    """One metered request's response as it passes: adds the run id (and cost) headers, keeps
    the status, and ends the run before the final body message goes to the server -- so no
    client holds a completed response whose run is not yet handed to the ledger."""

    __slots__ = ("_send", "ended", "meter", "metering", "started", "status")

    def __init__(self, metering: Metering, meter: Meter, send: Send) -> None:
        self.metering = metering
        self.meter = meter
        self._send = send
        self.status: int | None = None
        self.started = False
        self.ended = False

    def send(self, message: Message) -> Awaitable[None]:
        # A plain function returning ``send``'s awaitable for all but the last message.
        mtype = message["type"]
        if mtype == "http.response.body" or mtype == "websocket.http.response.body":
            if not message.get("more_body", False) and not self.ended:
                return self._end_then_send(message)
        elif mtype == "http.response.start":
            self.started = True
            self.status = message["status"]
            meter = self.meter
            # A new message and a new header list: the app's own message dict and header
            # list are never mutated (an app may send one prebuilt dict on every request).
            headers = [*message.get("headers", ()), (RUN_ID_HEADER, meter.run_id.encode())]
            if self.metering.cost_header:
                nanos = meter.cost_nanos
                headers.append((COST_HEADER, format_nanos(nanos).encode() if nanos else b"0"))
            message = {**message, "headers": headers}
        elif mtype == "websocket.accept":
            self.started = True
            run_header = (RUN_ID_HEADER, self.meter.run_id.encode())
            message = {**message, "headers": [*message.get("headers", ()), run_header]}
        elif mtype == "websocket.http.response.start":
            self.started = True
            self.status = message["status"]
        return self._send(message)

    def _end_then_send(self, message: Message) -> Awaitable[None]:
        status = self.status
        if status is not None and status >= 500:
            # An error response sent while an exception is handled (Starlette's
            # ServerErrorMiddleware sends its 500, then re-raises): the exception belongs in
            # the run, which is ended now, before it propagates here.
            handled = sys.exc_info()[1]
            if handled is not None:
                self.meter.record_error(handled)
        if self.metering.awaits:
            return self._end_async_then_send(message)
        self.ended = True
        self.metering.end(self.meter, status)
        return self._send(message)

    async def _end_async_then_send(self, message: Message) -> None:
        await self.end(self.status)
        await self._send(message)

    async def end(self, status: int | None) -> None:
        """End the run (once; the caller checked :attr:`ended`)."""
        self.ended = True
        if self.metering.awaits:
            await self.metering.end_async(self.meter, status)
        else:
            self.metering.end(self.meter, status)
