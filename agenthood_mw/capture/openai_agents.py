"""OpenAI Agents SDK hook: agent, tool and handoff names forwarded to the run's trace.

Pass :class:`MeteringRunHooks` to ``Runner.run(..., hooks=MeteringRunHooks())``. The model calls
themselves are charged at the wire (a metered transport in the agent's ``AsyncOpenAI`` client,
or :func:`agenthood_mw.capture.instrument`); the hooks charge nothing, so a call is never
counted twice. Requires ``openai-agents``. See ``docs/capture.md``.
"""

from __future__ import annotations

from typing import Any

from agents import RunHooks

from agenthood_mw.metering import Meter, current_meter

__all__ = ["MeteringRunHooks"]


def _meter() -> Meter | None:
    try:
        meter = current_meter()
    except LookupError:
        return None
    return None if meter.closed else meter


def _name(obj: Any) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else type(obj).__name__


class MeteringRunHooks(RunHooks[Any]):
    """``RunHooks`` adding ``agents_agent`` (``name``), ``agents_llm`` (``agent``, ``model``),
    ``agents_tool`` (``name``, ``agent``) and ``agents_handoff`` (``source``, ``target``)
    events to ``current_meter()``'s trace; nothing outside a meter. Charges nothing (the wire
    capture does)."""

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        meter = _meter()
        if meter is not None:
            meter.annotate("agents_agent", name=_name(agent))

    async def on_llm_start(
        self, context: Any, agent: Any, system_prompt: Any, input_items: Any
    ) -> None:
        meter = _meter()
        if meter is not None:
            model = getattr(agent, "model", None)
            meter.annotate(
                "agents_llm",
                agent=_name(agent),
                model=model if isinstance(model, str) else getattr(model, "model", None),
            )

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        meter = _meter()
        if meter is not None:
            meter.annotate("agents_tool", name=_name(tool), agent=_name(agent))

    async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
        meter = _meter()
        if meter is not None:
            meter.annotate("agents_handoff", source=_name(from_agent), target=_name(to_agent))
