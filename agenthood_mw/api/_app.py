"""``AgenthoodAPI``: agents as HTTP endpoints, a Starlette application."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import anyio.lowlevel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import Receive, Scope, Send

from agenthood_mw._asgi import agenthood_state, route_path
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw.api._agent import Agent
from agenthood_mw.api._background import (
    BackgroundRuns,
    last_event_id,
    render_record,
)
from agenthood_mw.api._chat import (
    DONE,
    ChatRequest,
    ChatStream,
    completion_body,
    model_body,
    models_body,
    openai_error,
    parse_chat_request,
)
from agenthood_mw.api._config import (
    check_agents,
    check_health_cache,
    check_meter_options,
    check_positive,
    check_prices,
    memory_backend,
)
from agenthood_mw.api._health import HealthCache, health_body
from agenthood_mw.api._http import (
    RawASGI,
    consumed_receive,
    error_response,
    http_exception_handler,
    internal_error_handler,
    json_response,
)
from agenthood_mw.api._offline import OFFLINE_MODEL, OfflineProvider
from agenthood_mw.api._openapi import add_background_runs, openapi_document
from agenthood_mw.api._provider import ChatMessage, LLMProvider
from agenthood_mw.api._request import (
    RunRequest,
    RunRequestError,
    check_content_length,
    check_content_type,
    parse_run_request,
    too_large,
)
from agenthood_mw.api._runner import RunFailed, render_response, render_run_event, run_agent
from agenthood_mw.api._sse import (
    EventSink,
    Render,
    SSEResponse,
    wants_event_stream,
)
from agenthood_mw.memory import MemoryBackend
from agenthood_mw.metering import (
    CostMeterMiddleware,
    Ledger,
    Meter,
    PriceTable,
    ThinkingBudget,
    TraceStore,
    current_meter,
    ledger_from_url,
    trace_store_from_url,
)

__all__ = ["DEMO_PRICES", "AgenthoodAPI"]

logger = logging.getLogger("agenthood_mw.api")

#: Prices of the offline demo model (dollars per million tokens), chosen so the seed's run
#: (1840 input + 220 output tokens) costs $0.00182 (0.00138 + 0.00044; the seed's example
#: shows it rounded to 0.0018). It is a demo figure, not a real price.
DEMO_PRICES: Final = {OFFLINE_MODEL: {"input": "0.75", "output": "2.00"}}

_RUN_KEY: Final = "api_run"
_HEALTH_SCOPE: Final = MemoryScope.operator(user="agenthood-health-check")
#: ``stopReason`` of a streamed run whose client disconnected (the run is cancelled, charged).
CLIENT_DISCONNECTED: Final = "client_disconnected"
_SSE: Final = "sse"
RunCall = Callable[[EventSink | None], Awaitable[dict[str, Any]]]


class AgenthoodAPI(Starlette):
    """Agents as HTTP endpoints, as a Starlette application.

    ``POST /agents/{name}/run`` runs an agent for the authenticated caller and answers
    ``{"agent", "userId", "output", "steps", "cost": {"inputTokens", "outputTokens",
    "totalCost"}, "memoryScope", "runId", "stopReason"}``; ``GET /agents``, ``GET /runs/{id}``
    (the caller's own traces only), ``GET /health`` and ``GET /openapi.json``.

    Authentication and rate limiting are added the Starlette way
    (``api.add_middleware(RateLimitMiddleware, ...)`` then ``api.add_middleware(AuthMiddleware,
    ...)``: the last added runs first). Cost metering is built in: a
    :class:`~agenthood_mw.CostMeterMiddleware` (``api.meter``) wraps the run itself, after
    validation, so listings, traces, health checks and refused requests are never metered.
    Every run's memory is a :class:`~agenthood_mw.memory.ScopedMemory` bound to
    ``MemoryScope.for_identity(caller)``.

    Args:
        agents: the agents to serve (unique ``name``; optional ``budget`` ThinkingBudget each).
        memory: ``{"isolation": "per-user", "backend": "sqlite:///agenthood.db"}``, a memory
            URL, or a :class:`~agenthood_mw.MemoryBackend` (default in-process memory).
        provider: the :class:`~agenthood_mw.api.LLMProvider` (often a ``ProviderFailover``);
            default the labelled :class:`~agenthood_mw.api.OfflineProvider`.
        prices: a :class:`~agenthood_mw.PriceTable` or its mapping (default: the offline
            demo model's price; other models are metered at zero with a warning).
        ledger: where usage is kept: a URL (``sqlite:///costs.db``, ``postgresql://...``,
            ``memory://``) or a ledger object.
        traces: where run traces are kept (URL or trace store; default the ledger's URL).
        thinking_budget: default budget of every agent (an agent's ``budget`` overrides it;
            a request's ``budget`` can only lower it).
        required_scopes: scopes a caller needs to run agents (403 otherwise).
        max_body_bytes: largest run request body (413 above).
        max_task_chars: longest task (422 above).
        run_timeout: wall-clock seconds after which a run is stopped (``stopReason:
            "timeout"``); ``None`` for no limit.
        stop_grace: seconds a plain ``def`` agent (a worker thread, which cannot be cancelled)
            is waited for after it was asked to stop, so what it spends is still metered; a
            thread still running then is left behind (logged) and refused further model
            calls, memory writes and usage. A run answers within ``run_timeout + stop_grace``.
        meter_options: extra keywords for the built-in ``CostMeterMiddleware`` (``budgets=``,
            ``on_alert=``, ``tokens_per_minute=``, ``trace_retention=`` ...).
        max_runs_per_user: background runs (``POST /agents/{name}/runs``) one caller may have
            queued or running in one worker process (429 ``too_many_runs`` past it).
        run_lease: seconds after which the background runs of a worker process that stopped
            announcing itself (killed, crashed) are marked ``interrupted`` by another or the
            next worker (a live worker renews its lease every ``run_lease / 3`` seconds).
        max_run_events: events a background run keeps for ``GET /runs/{id}/events?detail=run``
            (the oldest go first; a reader that missed them gets a ``dropped`` event).
        health_cache: seconds a ``GET /health`` result is reused (0 to 300; 0: every probe
            checks, concurrent probes still share one check). ``GET /health`` is
            unauthenticated: the cache bounds the store reads any number of probes cause.
        heartbeat: idle seconds after which a streamed run sends an SSE comment line, so
            proxies keep the connection open (default 15).
        middleware, routes, debug, title: as for Starlette / the OpenAPI title.
    """

    def __init__(
        self,
        *,
        agents: Sequence[Agent],
        memory: Mapping[str, Any] | str | MemoryBackend | None = None,
        provider: LLMProvider | None = None,
        prices: PriceTable | Mapping[str, Mapping[str, Any]] | None = None,
        ledger: str | Ledger = "memory://",
        traces: str | TraceStore | None = None,
        thinking_budget: ThinkingBudget | None = None,
        required_scopes: Sequence[str] = (),
        max_body_bytes: int = 64 * 1024,
        max_task_chars: int = 16_000,
        run_timeout: float | None = 300.0,
        stop_grace: float = 5.0,
        meter_options: Mapping[str, Any] | None = None,
        max_runs_per_user: int = 4,
        run_lease: float = 30.0,
        max_run_events: int = 1000,
        health_cache: float = 1.0,
        heartbeat: float = 15.0,
        middleware: Sequence[Middleware] | None = None,
        routes: Sequence[BaseRoute] | None = None,
        debug: bool = False,
        title: str = "agenthood-mw agent API",
    ) -> None:
        self.agents: dict[str, Agent] = check_agents(agents)
        if provider is None:
            provider = OfflineProvider()
            logger.warning(
                "AgenthoodAPI: no provider given, using the OfflineProvider (deterministic "
                "placeholder answers, not a language model)"
            )
        if not isinstance(provider, LLMProvider):
            raise TypeError("provider: expected an LLMProvider (complete() and aclose())")
        if prices is None:
            prices = PriceTable(DEMO_PRICES, unknown="zero")
        elif not isinstance(prices, PriceTable):
            prices = PriceTable(prices)
        check_prices(provider, prices)
        if thinking_budget is not None and not isinstance(thinking_budget, ThinkingBudget):
            raise TypeError("thinking_budget: expected a ThinkingBudget")
        raw_scopes: object = required_scopes
        if isinstance(raw_scopes, str) or not all(isinstance(s, str) for s in required_scopes):
            raise TypeError("required_scopes: expected a list of scope names")
        check_positive(max_body_bytes, "max_body_bytes", integer=True)
        check_positive(max_task_chars, "max_task_chars", integer=True)
        if run_timeout is not None:
            check_positive(run_timeout, "run_timeout", integer=False)
        check_positive(stop_grace, "stop_grace", integer=False)
        check_positive(max_runs_per_user, "max_runs_per_user", integer=True)
        check_positive(run_lease, "run_lease", integer=False)
        check_positive(max_run_events, "max_run_events", integer=True)
        check_positive(heartbeat, "heartbeat", integer=False)
        if meter_options is not None and not isinstance(meter_options, Mapping):
            raise TypeError("meter_options: expected a mapping of CostMeterMiddleware keywords")
        health_ttl = check_health_cache(health_cache)
        extra_meter = dict(meter_options or {})
        check_meter_options(extra_meter, inspect.signature(CostMeterMiddleware).parameters)
        self.provider = provider
        self.prices = prices
        self.required_scopes = frozenset(required_scopes)
        self.max_body_bytes = max_body_bytes
        self.max_task_chars = max_task_chars
        self.run_timeout = run_timeout
        self.stop_grace = float(stop_grace)
        self.heartbeat = float(heartbeat)
        self._health_cache = HealthCache(self._check_stores, ttl=health_ttl)
        # the stores last: nothing is opened when an option above is wrong
        self.memory_backend = memory_backend({} if memory is None else memory)
        self.ledger = ledger_from_url(ledger) if isinstance(ledger, str) else ledger
        if traces is None:
            traces = ledger if isinstance(ledger, str) else "memory://"
        self.traces = _trace_store(traces) if isinstance(traces, str) else traces
        agent_budgets = {
            name: b for name, a in self.agents.items() if (b := getattr(a, "budget", None))
        }
        agents_known = self.agents

        def agent_of(scope: Any) -> str | None:
            name = scope.get("path_params", {}).get("name")
            return name if isinstance(name, str) and name in agents_known else None

        #: The built-in metering of runs: only validated ``POST /agents/{name}/run`` requests
        #: reach it.
        self.meter = CostMeterMiddleware(
            request_response(self._execute),
            prices=self.prices,
            ledger=self.ledger,
            traces=self.traces,
            agent=agent_of,
            agents=list(self.agents),
            thinking_budget=thinking_budget,
            thinking_budgets=agent_budgets,
            **extra_meter,
        )
        #: The background runs of this worker process (``POST /agents/{name}/runs``).
        self.background = BackgroundRuns(
            backend=self.memory_backend,
            metering=self.meter.metering,
            execute=self._execute_background,
            max_per_user=max_runs_per_user,
            lease=float(run_lease),
            stop_grace=self.stop_grace,
            max_events=max_run_events,
        )
        self._openapi = openapi_document(title=title, agent_names=list(self.agents))
        add_background_runs(self._openapi, agent_names=list(self.agents))
        super().__init__(
            debug=debug,
            routes=[
                Route("/agents/{name}/run", RawASGI(self._admit), methods=["POST"]),
                Route("/agents", self._list_agents, methods=["GET"]),
                Route("/agents/{name}/runs", self._submit_run, methods=["POST"]),
                Route("/runs/{run_id}", self._get_run, methods=["GET"]),
                Route("/runs/{run_id}/events", self._run_events, methods=["GET"]),
                Route("/runs/{run_id}/cancel", self._cancel_run, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/chat/completions", RawASGI(self._chat), methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/models/{model}", self._get_model, methods=["GET"]),
                Route("/openapi.json", self._openapi_json, methods=["GET"]),
                *(routes or ()),
            ],
            middleware=middleware,
            exception_handlers={
                HTTPException: http_exception_handler,
                Exception: internal_error_handler,
            },
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.background.start()
        try:
            yield
        finally:
            await self.aclose()

    async def flush(self) -> None:
        """Wait until every finished run is in the ledger and the trace store."""
        await self.meter.flush()

    async def aclose(self) -> None:
        """Flush the metering, close the provider, the memory backend, the ledger and the trace
        store (the lifespan does this on shutdown)."""
        closers = (
            self.background.stop,
            self.meter.close,
            self.provider.aclose,
            self.memory_backend.close,
            self.ledger.close,
            self.traces.close,
        )
        for closer in closers:
            try:
                await closer()
            except Exception:
                logger.exception("error while closing %r", closer)

    # -- helpers ---------------------------------------------------------------------------
    def _caller(self, request: Request) -> Identity | HTTPError:
        user = request.scope.get("user")
        if not isinstance(user, Identity) or not user.is_authenticated:
            return HTTPError(
                401,
                "unauthorized",
                "this endpoint needs an authenticated caller",
                headers=(("www-authenticate", 'Bearer realm="agenthood"'),),
            )
        if self.required_scopes and not user.has_scopes(*self.required_scopes):
            needed = " ".join(sorted(self.required_scopes))
            challenge = f'Bearer realm="agenthood", error="insufficient_scope", scope="{needed}"'
            return HTTPError(
                403,
                "insufficient_scope",
                f"running agents needs the scope(s): {needed}",
                headers=(("www-authenticate", challenge),),
            )
        return user

    async def _read_body(self, request: Request) -> bytes:
        check_content_type(request.headers.get("content-type"))
        check_content_length(request.headers.get("content-length"), self.max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    # -- endpoints -------------------------------------------------------------------------
    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /agents/{name}/run``: validate everything, then hand over to the meter.

        Unknown agent, missing identity or scope, wrong content type, oversized or invalid body:
        answered here, before a meter exists, so a refused request leaves no run record, no
        trace and no charge (and never counts against a spend budget).
        """
        request = Request(scope, receive)
        agent = self.agents.get(request.path_params["name"])
        try:
            if agent is None:
                raise RunRequestError(HTTPError(404, "unknown_agent", "no agent with this name"))
            caller = self._caller(request)
            if isinstance(caller, HTTPError):
                raise RunRequestError(caller)
            body = await self._read_body(request)
            run_request = parse_run_request(body, max_task_chars=self.max_task_chars)
        except RunRequestError as exc:
            await error_response(exc.error)(scope, receive, send)
            return
        stream = run_request.stream or wants_event_stream(request.headers.get("accept"))
        agenthood_state(scope)[_RUN_KEY] = (agent, caller, run_request, _SSE if stream else None)
        await self.meter(scope, consumed_receive(receive), send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/chat/completions``: validated like a run (OpenAI-shaped errors), then
        run through the same meter with the body's ``model`` as the agent."""
        request = Request(scope, receive)
        try:
            caller = self._caller(request)
            if isinstance(caller, HTTPError):
                raise RunRequestError(caller)
            body = await self._read_body(request)
            chat = parse_chat_request(body, agents=self.agents, max_task_chars=self.max_task_chars)
        except RunRequestError as exc:
            await openai_error(exc.error)(scope, receive, send)
            return
        agent = self.agents[chat.model]
        run_request = RunRequest(task=chat.task, thinking_budget=chat.thinking_budget)
        agenthood_state(scope)[_RUN_KEY] = (agent, caller, run_request, chat)
        # the meter names a run's agent from the path's {name}; here it is the body's model
        scope = {**scope, "path_params": {**scope.get("path_params", {}), "name": agent.name}}
        await self.meter(scope, consumed_receive(receive), send)

    async def _execute(self, request: Request) -> Response:
        """The metered part of a run (inside ``CostMeterMiddleware``)."""
        agent, caller, run_request, shape = agenthood_state(request.scope).pop(_RUN_KEY)
        meter = current_meter()
        messages = shape.messages if isinstance(shape, ChatRequest) else ()

        async def run(events: EventSink | None) -> dict[str, Any]:
            return await self._run_agent(agent, caller, run_request, meter, events, messages)

        if isinstance(shape, ChatRequest):
            return await self._chat_response(run, meter, caller, shape)
        if shape == _SSE:
            return self._stream(run, meter, caller, render_run_event, b"")
        try:
            result = await run(None)
        except RunFailed as exc:
            return error_response(exc.error)
        return Response(
            render_response(result),
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    async def _chat_response(
        self, run: RunCall, meter: Meter, caller: Identity, chat: ChatRequest
    ) -> Response:
        if chat.stream:
            render = ChatStream(chat.model, include_usage=chat.include_usage)
            return self._stream(run, meter, caller, render, DONE)
        try:
            result = await run(None)
        except RunFailed as exc:
            return openai_error(exc.error)
        return Response(
            completion_body(result),
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    def _stream(
        self, run: RunCall, meter: Meter, caller: Identity, render: Render, closing: bytes
    ) -> SSEResponse:
        """A streamed run: ``start``, the run's own events, then ``result`` or ``error``. A
        client that disconnects cancels the run; what it used is charged (``stopReason:
        client_disconnected`` in the trace)."""

        async def produce(sink: EventSink) -> None:
            sink.emit(
                "start",
                {
                    "runId": meter.run_id,
                    "agent": meter.agent,
                    "userId": caller.user_id,
                    "memoryScope": MemoryScope.for_identity(caller).label,
                },
            )
            await anyio.lowlevel.checkpoint()  # the start event goes out before the run begins
            try:
                result = await run(sink)
            except RunFailed as exc:
                sink.emit("error", exc.error)
            except Exception:
                logger.exception("streamed run %s failed", meter.run_id)
                sink.emit("error", HTTPError(500, "internal_error", "internal server error"))
            else:
                sink.emit("result", result)

        def disconnected() -> None:
            if meter.stop_reason is None:
                meter.stop_reason = CLIENT_DISCONNECTED
            meter.record_error(CLIENT_DISCONNECTED)

        return SSEResponse(
            produce, render, heartbeat=self.heartbeat, on_disconnect=disconnected, closing=closing
        )

    async def _list_models(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, HTTPError):
            return openai_error(caller)
        return json_response(models_body(list(self.agents)))

    async def _get_model(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, HTTPError):
            return openai_error(caller)
        name = request.path_params["model"]
        if name not in self.agents:
            return openai_error(HTTPError(404, "model_not_found", "no agent with this name"))
        return json_response(model_body(name))

    async def _list_agents(self, request: Request) -> Response:
        del request
        return json_response(
            {
                "agents": [
                    {"name": a.name, "description": a.description} for a in self.agents.values()
                ]
            }
        )

    async def _get_run(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, HTTPError):
            return error_response(caller)
        run_id = request.path_params["run_id"]
        scope = MemoryScope.for_identity(caller)
        record = await self.background.record(scope, run_id)
        if record is not None:  # a background run: its status (and result when done)
            return Response(
                render_record(record),
                media_type="application/json",
                headers={"cache-control": "no-store"},
            )
        trace = await self.traces.get(scope, run_id)
        if trace is None:  # the writer may not have stored a run that just finished
            await self.flush()
            trace = await self.traces.get(scope, run_id)
        if trace is None:  # unknown, or another user's: the same answer
            return error_response(HTTPError(404, "unknown_run", "no run of yours with this id"))
        return json_response(trace)

    async def _validated(self, request: Request) -> tuple[Agent, Identity, RunRequest]:
        """The checks of ``POST /agents/{name}/run`` (raises ``RunRequestError``)."""
        agent = self.agents.get(request.path_params["name"])
        if agent is None:
            raise RunRequestError(HTTPError(404, "unknown_agent", "no agent with this name"))
        caller = self._caller(request)
        if isinstance(caller, HTTPError):
            raise RunRequestError(caller)
        body = await self._read_body(request)
        return agent, caller, parse_run_request(body, max_task_chars=self.max_task_chars)

    async def _submit_run(self, request: Request) -> Response:
        """``POST /agents/{name}/runs``: the same checks, budgets and metering as a run, then
        202 with the run's record at once; the run goes on in this process."""
        try:
            agent, caller, run_request = await self._validated(request)
        except RunRequestError as exc:
            return error_response(exc.error)
        started = await self.background.submit(
            agent, caller, run_request, route_path(request.scope)
        )
        if isinstance(started, HTTPError):
            return error_response(started)
        location = f"{request.scope.get('root_path', '')}/runs/{started['runId']}"
        return Response(
            render_record(started),
            status_code=202,
            media_type="application/json",
            headers={"cache-control": "no-store", "location": location},
        )

    async def _execute_background(
        self,
        agent: Agent,
        caller: Identity,
        run_request: RunRequest,
        meter: Meter,
        events: EventSink,
    ) -> dict[str, Any]:
        """A background run on its open meter: as :meth:`_execute`, without the HTTP part."""
        return await self._run_agent(agent, caller, run_request, meter, events, ())

    async def _run_agent(
        self,
        agent: Agent,
        caller: Identity,
        run_request: RunRequest,
        meter: Meter,
        events: EventSink | None,
        messages: tuple[ChatMessage, ...],
    ) -> dict[str, Any]:
        """Run ``agent`` on its open meter: the one place a validated request becomes a run
        (foreground, streamed, OpenAI-compatible and background runs all come here)."""
        meter.set_agent(agent.name)
        if run_request.thinking_budget is not None:
            meter.thinking_budget = run_request.thinking_budget
        return await run_agent(
            agent=agent,
            task=run_request.task,
            conversation_id=run_request.conversation_id,
            identity=caller,
            meter=meter,
            backend=self.memory_backend,
            provider=self.provider,
            run_timeout=self.run_timeout,
            stop_grace=self.stop_grace,
            events=events,
            messages=messages,
        )

    async def _run_events(self, request: Request) -> Response:
        """``GET /runs/{id}/events``: a background run as Server-Sent Events (its status
        changes; with ``?detail=run`` also its run events, while this process keeps them)."""
        caller = self._caller(request)
        if isinstance(caller, HTTPError):
            return error_response(caller)
        detail = request.query_params.get("detail", "status")
        if detail not in ("status", "run"):
            return error_response(
                HTTPError(400, "invalid_request", "'detail' must be 'status' or 'run'")
            )
        run_id = request.path_params["run_id"]
        scope = MemoryScope.for_identity(caller)
        if await self.background.record(scope, run_id) is None:
            return error_response(HTTPError(404, "unknown_run", "no run of yours with this id"))
        after = last_event_id(request.headers.get("last-event-id"))
        log = self.background.log(scope, run_id) if detail == "run" else None
        return StreamingResponse(
            log.follow(after) if log is not None else self.background.events(scope, run_id, after),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _cancel_run(self, request: Request) -> Response:
        """``POST /runs/{id}/cancel``: stop the caller's background run."""
        caller = self._caller(request)
        if isinstance(caller, HTTPError):
            return error_response(caller)
        scope = MemoryScope.for_identity(caller)
        record = await self.background.cancel(scope, request.path_params["run_id"])
        if isinstance(record, HTTPError):
            return error_response(record)
        return Response(
            render_record(record),
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    async def _health(self, request: Request) -> Response:
        del request
        body, healthy = health_body(await self._health_cache.checks())
        headers = {"cache-control": "no-store"}
        if not healthy:  # RFC 9110 10.2.3: when a new check may answer otherwise
            headers["retry-after"] = str(self._health_cache.retry_after())
        return json_response(body, status=200 if healthy else 503, headers=headers)

    async def _check_stores(self) -> dict[str, str]:
        """One read from each store (the memory backend, the ledger, the trace store)."""
        checks: dict[str, str] = {}
        try:
            await self.memory_backend.get(_HEALTH_SCOPE, "facts", "ping")
            checks["memory"] = "ok"
        except Exception:
            logger.exception("health check: memory backend")
            checks["memory"] = "unavailable"
        try:
            await self.ledger.spend(_HEALTH_SCOPE)
            checks["ledger"] = "ok"
        except Exception:
            logger.exception("health check: ledger")
            checks["ledger"] = "unavailable"
        try:
            await self.traces.get(_HEALTH_SCOPE, "health-check")
            checks["traces"] = "ok"
        except Exception:
            logger.exception("health check: trace store")
            checks["traces"] = "unavailable"
        return checks

    async def _openapi_json(self, request: Request) -> Response:
        del request
        return json_response(self._openapi)


def _trace_store(url: str) -> TraceStore:
    """``trace_store_from_url`` with its errors naming this option (``traces``)."""
    try:
        return trace_store_from_url(url)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith("traces:"):
            message = f"traces: {message}"
        raise ValueError(message) from None
