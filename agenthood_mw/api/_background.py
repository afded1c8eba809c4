"""Background runs: ``POST /agents/{name}/runs`` answers 202 at once, the run goes on here.

Where things live: a background run executes as an asyncio task *in the worker process that
accepted it*; its status record lives in the caller's own memory scope (the API's memory
backend, ``project`` tier, key ``.agenthood/runs/<runId>``), so reading it needs the caller's
:class:`MemoryScope` (another user's id is simply not there: 404). A small registry of runs in
flight and of live workers lives in a reserved operator scope (tenant reserved for anonymous
requests, which no token can claim): a worker refreshes its own entry every ``lease / 3``
seconds; any worker that finds a run in flight whose worker entry expired marks that run
``interrupted`` (at start, then on each refresh). Nothing is ever read without a scope.

What survives a restart: the records (with a durable memory backend); never the run itself.

A run's events (``GET /runs/{id}/events?detail=run``) are kept only in the worker executing it,
in a :class:`RunLog` of at most ``max_events`` events, and for the ``KEPT_ENDED`` runs that
ended last; never in a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from agenthood_mw._core.scope import ANONYMOUS_TENANT, MemoryScope
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw.api._agent import Agent
from agenthood_mw.api._request import RunRequest
from agenthood_mw.api._runlog import RunLog
from agenthood_mw.api._runner import RunFailed, render_response
from agenthood_mw.api._sse import EventSink, encode_event
from agenthood_mw.memory import MemoryBackend
from agenthood_mw.metering import Meter, Metering, reset_meter, set_meter

__all__ = [
    "FINAL_STATES",
    "BackgroundRuns",
    "Execute",
    "is_run_id",
    "last_event_id",
    "render_record",
]

logger = logging.getLogger("agenthood_mw.api")

#: Runs the agent for a validated request on an open meter; returns the seed's response dict.
#: Its events (steps, deltas, tool calls ...) go to the :class:`EventSink`.
Execute = Callable[[Agent, Identity, RunRequest, Meter, EventSink], Awaitable[dict[str, Any]]]

QUEUED: Final = "queued"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
STOPPED: Final = "stopped"
FAILED: Final = "failed"
INTERRUPTED: Final = "interrupted"
#: The states a run never leaves.
FINAL_STATES: Final = frozenset({COMPLETED, STOPPED, FAILED, INTERRUPTED})
_STATES: Final = FINAL_STATES | {QUEUED, RUNNING}

_TIER: Final = "project"
_RECORD: Final = ".agenthood/runs/"
#: The registry of runs in flight and live workers: a scope no identity can reach.
_REGISTRY: Final = MemoryScope.operator(user="agenthood-background-runs", tenant=ANONYMOUS_TENANT)
#: How long a run's record is kept (as the trace store's default retention).
RECORD_TTL: Final = 30 * 86400.0
_RUN_ID: Final = re.compile(r"[0-9a-f]{32}")
_HEARTBEAT: Final = 15.0
_POLL: Final = 0.5
#: How many ended runs keep their events in memory (the oldest ended run's go first).
KEPT_ENDED: Final = 256
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def is_run_id(text: str) -> bool:
    """Whether ``text`` has the shape of a run id (32 lowercase hex digits)."""
    return _RUN_ID.fullmatch(text) is not None


def _now() -> float:
    return time.time()


def render_record(record: dict[str, Any]) -> bytes:
    """A status record as JSON: ``result`` is the seed's JSON, kept as its exact text (the
    cost a JSON number written from the exact decimal, never through a float)."""
    head = _ENCODER.encode({k: v for k, v in record.items() if k not in ("result", "worker")})
    result = record.get("result") or "null"
    comma = "," if len(head) > 2 else ""
    return f'{head[:-1]}{comma}"result":{result}}}'.encode()


def last_event_id(value: str | None) -> int:
    """The ``Last-Event-ID`` a client resumes after (0 -- from the start -- when absent or not
    an event id of ours)."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 9:
        return 0
    return int(value)


class _Live:
    """A run this process is executing: its record, the task, waiters for the next event."""

    __slots__ = ("cancel_reason", "changed", "finishing", "log", "record", "scope", "task")

    def __init__(self, scope: MemoryScope, record: dict[str, Any], log: RunLog) -> None:
        self.scope = scope
        self.record = record
        self.log = log
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None
        #: Set once the run is over and being settled: no cancel may cut that short.
        self.finishing = False
        self.changed = asyncio.Event()

    def stop(self, reason: str) -> asyncio.Task[None] | None:
        """Cancel the run (unless it is already being settled); the task to wait for."""
        task = self.task
        if task is None or task.done():
            return None
        if not self.finishing:
            self.cancel_reason = reason
            task.cancel()
        return task

    def notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class BackgroundRuns:
    """The background runs of one :class:`~agenthood_mw.AgenthoodAPI` worker process.

    Args:
        backend: the memory backend the status records go to (the API's).
        metering: the API's :class:`~agenthood_mw.metering.Metering`: the same admission
            (spend budgets, token rate) and settlement (ledger, traces) as a foreground run.
        execute: runs the agent on an open meter (the API's run, its thinking budgets and
            ``run_timeout``).
        max_per_user: runs one caller may have queued or running in this process.
        lease: seconds after which a silent worker's runs count as ``interrupted``.
        stop_grace: seconds a cancelled run is waited for (its usage is still metered).
        max_events: events kept per run for ``?detail=run`` streams (the oldest go first).
    """

    def __init__(
        self,
        *,
        backend: MemoryBackend,
        metering: Metering,
        execute: Execute,
        max_per_user: int,
        lease: float,
        stop_grace: float,
        max_events: int = 1000,
    ) -> None:
        self.backend = backend
        self.metering = metering
        self.execute = execute
        self.max_per_user = max_per_user
        self.lease = lease
        self.stop_grace = stop_grace
        self.max_events = max_events
        self.worker_id = os.urandom(8).hex()
        self._live: dict[str, _Live] = {}
        self._in_flight: dict[MemoryScope, int] = {}
        self._logs: dict[str, RunLog] = {}
        self._ended: deque[str] = deque()
        self._keeper: asyncio.Task[None] | None = None
        self._closed = False

    # -- worker lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Announce this worker, mark the runs of dead workers ``interrupted``, keep the
        announcement fresh (idempotent; the first background run starts it too)."""
        if self._keeper is not None or self._closed:
            return
        self._keeper = asyncio.create_task(self._keep())
        await self._beat()

    async def _beat(self) -> None:
        try:
            await self.backend.put(
                _REGISTRY,
                _TIER,
                f"workers/{self.worker_id}",
                {"pid": os.getpid(), "seen": _now()},
                ttl=self.lease,
            )
            await self._sweep()
        except Exception:
            logger.exception("background runs: could not refresh the worker registry")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            await self._beat()

    async def _sweep(self) -> None:
        """Mark ``interrupted`` every run in flight whose worker stopped announcing itself."""
        cursor: str | None = None
        while True:
            page = await self.backend.list(_REGISTRY, _TIER, "runs/", limit=100, cursor=cursor)
            for entry in page.items:
                await self._reap(entry.key, entry.value)
            cursor = page.next_cursor
            if cursor is None:
                return

    async def _reap(self, key: str, entry: Any) -> None:
        worker = entry.get("worker") if isinstance(entry, dict) else None
        if worker == self.worker_id:
            return
        if isinstance(worker, str) and await self.backend.get(
            _REGISTRY, _TIER, f"workers/{worker}"
        ):
            return  # its worker is alive
        run_id = key.removeprefix("runs/")
        try:
            scope = MemoryScope.from_storage_key(entry["scope"])
        except (KeyError, TypeError, ValueError):
            scope = None
        if scope is not None and is_run_id(run_id):
            record = await self._load(scope, run_id)
            if record is not None and record["status"] not in FINAL_STATES:
                record.update(status=INTERRUPTED, stopReason="interrupted", endedAt=_now())
                record["eventId"] += 1
                await self._store(scope, record)
                logger.warning("background run %s marked interrupted (worker %s)", run_id, worker)
        await self.backend.delete(_REGISTRY, _TIER, key)

    async def stop(self) -> None:
        """Shutdown: the runs still going are cancelled and recorded ``interrupted`` (their
        usage metered), then this worker leaves the registry."""
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        tasks = [t for live in list(self._live.values()) if (t := live.stop(INTERRUPTED))]
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_grace + 5.0)
        try:
            await self.backend.delete(_REGISTRY, _TIER, f"workers/{self.worker_id}")
        except Exception:
            logger.exception("background runs: could not leave the worker registry")

    # -- records -----------------------------------------------------------------------------
    async def _load(self, scope: MemoryScope, run_id: str) -> dict[str, Any] | None:
        rec = await self.backend.get(scope, _TIER, _RECORD + run_id)
        return None if rec is None or not _well_formed(rec.value, run_id) else rec.value

    async def _store(self, scope: MemoryScope, record: dict[str, Any]) -> None:
        await self.backend.put(scope, _TIER, _RECORD + record["runId"], record, ttl=RECORD_TTL)

    async def record(self, scope: MemoryScope, run_id: str) -> dict[str, Any] | None:
        """The caller's run record (``None``: no background run of theirs has this id)."""
        if not is_run_id(run_id):
            return None
        live = self._live.get(run_id)
        if live is not None and live.scope == scope:
            return live.record
        return await self._load(scope, run_id)

    # -- submit ------------------------------------------------------------------------------
    async def submit(
        self, agent: Agent, caller: Identity, request: RunRequest, path: str
    ) -> dict[str, Any] | HTTPError:
        """Admit a validated request and start its run, or the refusal (nothing created)."""
        scope = MemoryScope.for_identity(caller)
        if self._closed:
            return HTTPError(503, "shutting_down", "the server is shutting down; try again")
        if self._in_flight.get(scope, 0) >= self.max_per_user:
            return HTTPError(
                429,
                "too_many_runs",
                f"you already have {self.max_per_user} background runs in flight",
                headers=(("retry-after", "5"),),
            )
        self._in_flight[scope] = self._in_flight.get(scope, 0) + 1  # held across the awaits
        try:
            return await self._open(agent, caller, request, path, scope)
        except BaseException:
            self._release(scope)
            raise

    async def _open(
        self, agent: Agent, caller: Identity, request: RunRequest, path: str, scope: MemoryScope
    ) -> dict[str, Any] | HTTPError:
        await self.start()
        metering = self.metering
        if metering.awaits:
            meter = await metering.begin_async(caller, path, agent.name)
        else:
            meter = metering.begin(caller, path, agent.name)
        if isinstance(meter, HTTPError):
            self._release(scope)
            return meter
        record: dict[str, Any] = {
            "runId": meter.run_id,
            "agent": agent.name,
            "status": QUEUED,
            "stopReason": None,
            "createdAt": _now(),
            "startedAt": None,
            "endedAt": None,
            "error": None,
            "eventId": 1,
            "worker": self.worker_id,
        }
        entry = {"scope": scope.storage_key, "worker": self.worker_id}
        try:
            await self.backend.put(_REGISTRY, _TIER, "runs/" + meter.run_id, entry)
            await self._store(scope, record)
        except Exception:
            logger.exception("background run %s: its record could not be stored", meter.run_id)
            meter.record_error("the run record could not be stored")
            await self._end(meter, 503)
            self._release(scope)
            with contextlib.suppress(Exception):
                await self.backend.delete(_REGISTRY, _TIER, "runs/" + meter.run_id)
            return HTTPError(503, "store_unavailable", "the run could not be recorded; try again")
        log = RunLog(scope, self.max_events)
        log.add("status", render_record(record))
        self._logs[meter.run_id] = log
        live = _Live(scope, record, log)
        self._live[meter.run_id] = live
        live.task = asyncio.create_task(self._drive(live, agent, caller, request, meter))
        return record

    def _release(self, scope: MemoryScope) -> None:
        left = self._in_flight.get(scope, 0) - 1
        if left > 0:
            self._in_flight[scope] = left
        else:
            self._in_flight.pop(scope, None)

    async def _end(self, meter: Meter, status: int | None) -> None:
        """Settle the meter: the run goes to the ledger and the traces, exactly once."""
        if self.metering.awaits:
            await self.metering.end_async(meter, status)
        else:
            self.metering.end(meter, status)

    # -- the run -----------------------------------------------------------------------------
    async def _advance(self, live: _Live, **changes: Any) -> None:
        live.record.update(changes)
        live.record["eventId"] += 1
        live.log.add("status", render_record(live.record))
        try:
            await self._store(live.scope, live.record)
        except Exception:
            logger.exception(
                "background run %s: its record could not be updated", live.record["runId"]
            )
        live.notify()

    async def _drive(
        self, live: _Live, agent: Agent, caller: Identity, request: RunRequest, meter: Meter
    ) -> None:
        run_id = meter.run_id
        token = set_meter(meter)
        outcome: tuple[str, int | None, str | None, dict[str, Any] | None] | None = None
        try:
            await self._advance(live, status=RUNNING, startedAt=_now())
            live.log.add(
                "start",
                {
                    "runId": run_id,
                    "agent": agent.name,
                    "userId": caller.user_id,
                    "memoryScope": live.scope.label,
                },
            )
            outcome = await self._outcome(live, agent, caller, request, meter)
        finally:
            live.finishing = True
            reset_meter(token)
            if outcome is None:  # cancelled before the run started
                outcome = self._cancelled(live, agent, caller, meter)
            state, http_status, result, error = outcome
            try:
                await self._end(meter, http_status)
            except Exception:
                logger.exception("background run %s: settling its meter failed", run_id)
            await self._follow_stored(live)
            if result is not None:
                live.log.add("result", result.encode())
            elif error is not None:
                live.log.add("error", {"error": error})
            await self._advance(
                live,
                status=state,
                stopReason=meter.stop_reason if state != FAILED else None,
                endedAt=_now(),
                result=result,
                error=error,
            )
            self._live.pop(run_id, None)
            self._retire(run_id, live.log)
            self._release(live.scope)
            try:
                await self.backend.delete(_REGISTRY, _TIER, "runs/" + run_id)
            except Exception:
                logger.exception("background run %s: registry entry not removed", run_id)

    async def _follow_stored(self, live: _Live) -> None:
        """Number the final event after any the store holds (another worker may have taken
        this one for dead and recorded the run ``interrupted`` meanwhile)."""
        try:
            stored = await self._load(live.scope, live.record["runId"])
        except Exception:
            return
        if stored is not None and stored["eventId"] > live.record["eventId"]:
            live.record["eventId"] = stored["eventId"]

    def _retire(self, run_id: str, log: RunLog) -> None:
        """The run ended: its events stay readable while it is among the last ``KEPT_ENDED``."""
        log.end()
        self._ended.append(run_id)
        while len(self._ended) > KEPT_ENDED:
            self._logs.pop(self._ended.popleft(), None)

    async def _outcome(
        self, live: _Live, agent: Agent, caller: Identity, request: RunRequest, meter: Meter
    ) -> tuple[str, int | None, str | None, dict[str, Any] | None]:
        """``(status, HTTP status for the trace, seed JSON text, error)`` of the run."""
        try:
            response = await self.execute(agent, caller, request, meter, live.log.sink())
        except RunFailed as exc:
            error = {"type": exc.error.type, "message": exc.error.message}
            return FAILED, exc.error.status, None, error
        except asyncio.CancelledError:
            return self._cancelled(live, agent, caller, meter)
        except Exception:
            logger.exception("background run %s failed", meter.run_id)
            error = {"type": "internal_error", "message": "the run failed; see its trace"}
            return FAILED, 500, None, error
        state = COMPLETED if response["stopReason"] == COMPLETED else STOPPED
        return state, 200, render_response(response).decode(), None

    def _cancelled(
        self, live: _Live, agent: Agent, caller: Identity, meter: Meter
    ) -> tuple[str, int | None, str | None, dict[str, Any] | None]:
        """A cancelled run (``POST /runs/{id}/cancel``: ``stopped``; shutdown: ``interrupted``)
        answers what it used, with an empty output."""
        reason = live.cancel_reason or INTERRUPTED
        meter.stop_reason = "cancelled" if reason != INTERRUPTED else INTERRUPTED
        totals = meter.totals
        response = {
            "agent": agent.name,
            "userId": caller.user_id,
            "output": "",
            "steps": totals.steps,
            "cost": {
                "inputTokens": totals.input_tokens,
                "outputTokens": totals.output_tokens,
                "totalCost": totals.total_cost,
            },
            "memoryScope": live.scope.label,
            "runId": meter.run_id,
            "stopReason": meter.stop_reason,
        }
        state = STOPPED if reason != INTERRUPTED else INTERRUPTED
        return state, None, render_response(response).decode(), None

    # -- cancel and events -------------------------------------------------------------------
    async def cancel(self, scope: MemoryScope, run_id: str) -> dict[str, Any] | HTTPError:
        """Stop the caller's run and wait (bounded) until what it used is settled."""
        live = self._live.get(run_id) if is_run_id(run_id) else None
        if live is not None and live.scope == scope:
            task = live.stop("cancelled")
            if task is not None:
                await asyncio.wait({task}, timeout=self.stop_grace + 5.0)
            return live.record
        record = await self.record(scope, run_id)
        if record is None:
            return _unknown()
        if record["status"] not in FINAL_STATES:
            return HTTPError(
                409,
                "run_elsewhere",
                "the run is executing in another worker process, which alone can cancel it",
            )
        return record

    def log(self, scope: MemoryScope, run_id: str) -> RunLog | None:
        """The caller's run's kept events (``None``: this process holds none for them)."""
        log = self._logs.get(run_id)
        return log if log is not None and log.scope == scope else None

    async def events(self, scope: MemoryScope, run_id: str, after: int) -> AsyncIterator[bytes]:
        """The run as Server-Sent Events after event ``after``: one ``status`` event per state
        (its data the run record), the stream ending with the final state; a comment line
        every 15 s of silence keeps proxies from closing it."""
        sent = after
        quiet = 0.0
        while True:
            live = self._live.get(run_id)
            mine = live is not None and live.scope == scope
            changed = live.changed if mine and live is not None else None
            record = await self.record(scope, run_id)
            if record is None:
                return
            if record["eventId"] > sent:
                sent, quiet = record["eventId"], 0.0
                yield encode_event("status", render_record(record), str(sent))
            if record["status"] in FINAL_STATES:
                return
            try:
                if changed is not None:
                    await asyncio.wait_for(changed.wait(), _HEARTBEAT)
                else:  # executing in another worker: read its record again
                    await asyncio.sleep(_POLL)
                    quiet += _POLL
                    if quiet >= _HEARTBEAT:
                        raise TimeoutError
            except TimeoutError:
                quiet = 0.0
                yield b": keep-alive\n\n"


def _well_formed(value: object, run_id: str) -> bool:
    """Whether a stored value is a run record of ours for ``run_id`` (the key sits in the
    caller's own memory, which their agents can write: anything else is not a run)."""
    if not isinstance(value, dict) or value.get("runId") != run_id:
        return False
    event_id = value.get("eventId")
    result = value.get("result")
    return (
        value.get("status") in _STATES
        and type(event_id) is int
        and event_id > 0
        and (result is None or _json_object(result))
    )


def _json_object(text: object) -> bool:
    """Whether ``text`` is the JSON text of an object (it is written into answers as is)."""
    if not isinstance(text, str):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _unknown() -> HTTPError:
    return HTTPError(404, "unknown_run", "no run of yours with this id")
