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

if TYPE_CHECKING:
    from agenthood_mw.memory import MemoryBackend
    from agenthood_mw.metering import Meter

__all__ = ["RunFailed", "render_response", "run_agent"]

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


async def _invoke(agent: Agent, task: str, ctx: RunContext) -> Any:
    run = agent.run
    if inspect.iscoroutinefunction(run):
        return await run(task, ctx)
    result = await anyio.to_thread.run_sync(run, task, ctx, abandon_on_cancel=True)
    if inspect.isawaitable(result):
        return await result
    return result


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
) -> dict[str, Any]:
    """Run ``agent`` on ``task`` for ``identity``; return the response JSON object.

    Raises :class:`RunFailed` for provider outages (503/502) and agent crashes (500); the
    meter keeps what was used (tokens spent before a failure are real spend).
    """
    from agenthood_mw.memory import ScopedMemory
    from agenthood_mw.metering import BudgetExhausted

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
    )
    data: dict[str, Any] = {}
    stop_reason = COMPLETED
    try:
        result: Any = None
        with anyio.move_on_after(run_timeout) as deadline:  # None: no deadline
            result = await _invoke(agent, task, ctx)
        if deadline.cancelled_caught:
            output, stop_reason = ctx.partial_output, TIMED_OUT
            meter.record_error("run_timeout")
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
