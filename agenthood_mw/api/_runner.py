"""Run one agent for one authenticated caller and shape the seed's response."""

from __future__ import annotations

import inspect
import json
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw.api._agent import Agent, AgentResult, RunContext
from agenthood_mw.api._failover import AllProvidersFailed
from agenthood_mw.api._provider import LLMProvider, ProviderError
from agenthood_mw.api._sse import EventSink, encode_event
from agenthood_mw.metering import BudgetExhausted

if TYPE_CHECKING:
    from agenthood_mw.api._provider import ChatMessage
    from agenthood_mw.memory import MemoryBackend
    from agenthood_mw.metering import Meter

__all__ = ["RunFailed", "render_response", "render_run_event", "run_agent"]

logger = logging.getLogger("agenthood_mw.api")

#: ``stopReason`` of a run that finished on its own.
COMPLETED = "completed"
#: ``stopReason`` of a run stopped by the API's wall-clock ``run_timeout``.
TIMED_OUT = "timeout"
_HISTORY_TEXT = 2000


class RunFailed(Exception):
    """The run could not finish; ``.error`` is the response (the trace keeps the details)."""

    def __init__(self, error: HTTPError) -> None:
        super().__init__(error.message)
        self.error = error


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_HEAD = ("agent", "userId", "output", "steps")
_TAIL = ("memoryScope", "runId", "stopReason")


def render_response(response: dict[str, Any]) -> bytes:
    """The run response as JSON, keys in the seed's order, ``cost.totalCost`` written as a JSON
    number from the exact ``Decimal`` (``0.0018``, never ``1.8e-03`` or a binary float)."""
    cost = response["cost"]
    total = cost["totalCost"]
    total_text = format(total, "f") if isinstance(total, Decimal) else _ENCODER.encode(total)
    head = _ENCODER.encode({k: response[k] for k in _HEAD})
    tail = _ENCODER.encode({k: response[k] for k in _TAIL})
    cost_text = (
        f'"cost":{{"inputTokens":{int(cost["inputTokens"])},'
        f'"outputTokens":{int(cost["outputTokens"])},"totalCost":{total_text}}}'
    )
    return f"{head[:-1]},{cost_text},{tail[1:]}".encode()


def render_run_event(event: str, data: object, number: int) -> bytes:
    """A run's event as ``POST /agents/{name}/run`` streams it (``id:`` is the event's number
    in the run): the ``result`` event carries exactly the run response, ``error`` the JSON
    error body (``{"error": {"type", "message"}}``)."""
    if event == "result" and isinstance(data, dict):
        data = render_response(data)
    elif isinstance(data, HTTPError):
        data = data.body()
    return encode_event(event, data, str(number))


async def _invoke(
    agent: Agent, task: str, ctx: RunContext, run_timeout: float | None, stop_grace: float
) -> tuple[Any, bool]:
    """Run the agent under ``run_timeout``; returns ``(result, timed_out)``.

    An ``async def`` agent is cancelled at the deadline. A plain ``def`` agent runs in a worker
    thread, which cannot be cancelled: at the deadline the run is asked to stop (its next
    ``ctx.step`` / ``ctx.complete`` / ``ctx.call`` raises ``BudgetExhausted("timeout")``) and
    the thread is waited for, at most ``stop_grace`` seconds, so the usage it incurs is still on
    the open meter. A thread still running after that is left behind, logged; the run's
    context refuses its model calls and memory writes and the finished meter its usage.
    """
    run = agent.run
    if inspect.iscoroutinefunction(run):
        with anyio.move_on_after(run_timeout):  # None: no deadline
            return await run(task, ctx), False
        ctx.request_stop(TIMED_OUT)
        return None, True
    result, timed_out = await _invoke_in_thread(run, task, ctx, run_timeout, stop_grace)
    if inspect.isawaitable(result):
        remaining = None if run_timeout is None else max(0.0, run_timeout - ctx.meter.elapsed())
        with anyio.move_on_after(remaining):
            return await result, timed_out
        ctx.request_stop(TIMED_OUT)
        return None, True
    return result, timed_out


async def _invoke_in_thread(
    run: Any, task: str, ctx: RunContext, run_timeout: float | None, stop_grace: float
) -> tuple[Any, bool]:
    done = anyio.Event()
    outcome: list[Any] = []
    failure: list[Exception] = []
    # Shielded: a cancelled request must not silently abandon the thread; only the explicit
    # cancel below (after the grace) does.
    worker_scope = anyio.CancelScope(shield=True)

    async def worker() -> None:
        try:
            with worker_scope:
                value = await anyio.to_thread.run_sync(run, task, ctx, abandon_on_cancel=True)
                outcome.append(value)
        except Exception as exc:
            failure.append(exc)
        finally:
            done.set()

    timed_out = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        try:
            with anyio.move_on_after(run_timeout):
                await done.wait()
            timed_out = not done.is_set()
        finally:
            if not done.is_set():  # the deadline, or this request was cancelled
                ctx.request_stop(TIMED_OUT if timed_out else "cancelled")
                with anyio.CancelScope(shield=True), anyio.move_on_after(stop_grace):
                    await done.wait()
                if not done.is_set():
                    logger.error(
                        "sync agent %r did not stop within %ss of being asked to (run %s); its "
                        "thread is left running and its further model calls, memory writes and "
                        "usage are refused",
                        ctx.agent,
                        stop_grace,
                        ctx.run_id,
                    )
                    worker_scope.cancel()
    if failure:
        if not timed_out:
            raise failure[0]
        if not isinstance(failure[0], BudgetExhausted):  # it failed while stopping
            ctx.meter.record_error(failure[0])
        return None, True
    return (outcome[0] if outcome else None), timed_out


def _output_text(result: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(result, AgentResult):
        return result.output, result.data
    if isinstance(result, str):
        return result, {}
    if result is None:
        return "", {}
    raise TypeError(f"an agent must return a str or an AgentResult, got {type(result).__name__}")


async def run_agent(
    *,
    agent: Agent,
    task: str,
    identity: Identity,
    meter: Meter,
    backend: MemoryBackend,
    provider: LLMProvider,
    run_timeout: float | None,
    stop_grace: float = 5.0,
    conversation_id: str | None = None,
    events: EventSink | None = None,
    messages: tuple[ChatMessage, ...] = (),
) -> dict[str, Any]:
    """Run ``agent`` on ``task`` for ``identity``; return the response JSON object.

    ``events``: stream the run's steps, tool calls and text there (see ``RunContext.emit``);
    ``messages``: the conversation of an OpenAI-compatible request (``RunContext.messages``).

    Raises :class:`RunFailed` for provider outages (503/502) and agent crashes (500); the
    meter keeps what was used (tokens spent before a failure are real spend).
    """
    from agenthood_mw.memory import ScopedMemory

    scope = MemoryScope.for_identity(identity)
    if meter.scope != scope:  # defence in depth: the meter must bill the same caller
        raise RunFailed(HTTPError(500, "internal_error", "the run could not be attributed"))
    budget = meter.thinking_budget
    if budget is None:
        from agenthood_mw.metering import ThinkingBudget

        budget = ThinkingBudget()
    ctx = RunContext(
        identity=identity,
        scope=scope,
        memory=ScopedMemory(backend, scope),
        meter=meter,
        thinking_budget=budget,
        provider=provider,
        run_id=meter.run_id,
        agent=agent.name,
        conversation_id=conversation_id,
        messages=messages,
        events=events,
    )
    data: dict[str, Any] = {}
    stop_reason = COMPLETED
    try:
        result, timed_out = await _invoke(agent, task, ctx, run_timeout, stop_grace)
        if timed_out:
            stop_reason = TIMED_OUT
            meter.record_error("run_timeout")
            output = ctx.partial_output
            if result is not None:  # a sync agent that returned when asked to stop
                output, data = _output_text(result)
        else:
            output, data = _output_text(result)
    except BudgetExhausted as exc:
        output, stop_reason = ctx.partial_output, exc.reason
    except AllProvidersFailed as exc:
        meter.record_error(exc)
        headers: tuple[tuple[str, str], ...] = ()
        if exc.retry_after is not None:
            headers = (("retry-after", str(max(1, round(exc.retry_after)))),)
        raise RunFailed(
            HTTPError(
                503,
                "provider_unavailable",
                "every model provider is unavailable; try again later",
                headers=headers,
            )
        ) from exc
    except ProviderError as exc:
        meter.record_error(exc)
        status = 503 if exc.retryable else 502
        kind = "provider_unavailable" if exc.retryable else "provider_error"
        raise RunFailed(HTTPError(status, kind, "the model provider could not answer")) from exc
    except Exception as exc:
        meter.record_error(exc)
        logger.exception("agent %r failed (run %s)", agent.name, meter.run_id)
        raise RunFailed(
            HTTPError(500, "agent_error", "the agent failed; see the run trace")
        ) from None
    if meter.stop_reason is None:
        meter.stop_reason = stop_reason
    if data:
        meter.tool_call("agent_result", result=data)
    totals = meter.totals
    cost = totals.total_cost
    response = {
        "agent": agent.name,
        "userId": identity.user_id,
        "output": output,
        "steps": totals.steps,
        "cost": {
            "inputTokens": totals.input_tokens,
            "outputTokens": totals.output_tokens,
            "totalCost": cost,
        },
        "memoryScope": scope.label,
        "runId": meter.run_id,
        "stopReason": stop_reason,
    }
    try:
        await ctx.memory.episodic.append(
            {
                "type": "run",
                "agent": agent.name,
                "runId": meter.run_id,
                "task": task[:_HISTORY_TEXT],
                "output": output[:_HISTORY_TEXT],
                "stopReason": stop_reason,
                "steps": totals.steps,
                "totalCost": str(cost),
            }
        )
    except Exception:  # the run happened and was metered: answer it, log the lost history
        logger.exception("could not append run %s to episodic memory", meter.run_id)
    return response
