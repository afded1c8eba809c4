"""``LangGraphAgent``: serve a compiled LangGraph graph through ``AgenthoodAPI``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.pregel import Pregel
from langgraph.types import StreamMode

from agenthood_mw.api import AgentResult, RunContext
from agenthood_mw.integrations.langgraph._checkpointer import ScopedCheckpointer
from agenthood_mw.metering import BudgetExhausted, ThinkingBudget

__all__ = ["LangGraphAgent"]

#: The thread of a run that names no conversation.
DEFAULT_CONVERSATION = "default"
_MODES: Final[list[StreamMode]] = ["tasks", "values"]


def _default_input(task: str, ctx: RunContext) -> Any:
    del ctx
    return {"messages": [{"role": "user", "content": task}]}


def _default_output(values: Any) -> str:
    """The content of the last message in ``values["messages"]``, else ``str(values)``."""
    if isinstance(values, dict):
        messages = values.get("messages")
        if isinstance(messages, list) and messages:
            last = messages[-1]
            if isinstance(last, dict):
                content = last.get("content")
            else:
                content = getattr(last, "content", last)
            return content if isinstance(content, str) else str(content)
    return "" if values is None else str(values)


class LangGraphAgent:
    """An :class:`~agenthood_mw.api.Agent` that runs a compiled LangGraph graph per request.

    Each run uses the caller's own thread: the thread id is this agent's name and the
    request's ``conversationId`` (``"default"`` without one), and the thread lives inside the
    caller's :class:`~agenthood_mw.MemoryScope` (the scoped checkpointer), so one user's
    conversation id can never reach another user's state.

    Every graph task that starts is one :meth:`RunContext.step` (checked against the run's
    ``ThinkingBudget`` before the node runs); ``ThinkingBudget.max_steps`` also becomes the
    graph's ``recursion_limit``. Model calls made inside nodes are charged to the run by
    whatever records them on ``current_meter()``.

    Args:
        graph: a compiled graph (``StateGraph(...).compile()``); it is copied with the scoped
            checkpointer (and ``store``) in place of its own.
        name: the agent's name in ``/agents/{name}/run``.
        checkpointer: a :class:`ScopedCheckpointer` without a fixed scope (each run binds the
            caller's scope).
        store: an optional LangGraph ``BaseStore`` for long-term memory (e.g. agenthood's
            ``ScopedStore``), passed to the graph as is.
        description: shown by ``GET /agents``.
        budget: this agent's own :class:`~agenthood_mw.ThinkingBudget` (a request may only
            lower it).
        make_input: ``(task, ctx) -> graph input`` (default: one user message under
            ``"messages"``).
        make_output: ``(final state values) -> str`` (default: the last message's content).
    """

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        *,
        name: str,
        checkpointer: ScopedCheckpointer,
        store: Any = None,
        description: str = "",
        budget: ThinkingBudget | None = None,
        make_input: Callable[[str, RunContext], Any] = _default_input,
        make_output: Callable[[Any], str] = _default_output,
    ) -> None:
        if not isinstance(graph, Pregel):
            raise TypeError("graph must be a compiled LangGraph graph (StateGraph(...).compile())")
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        if not isinstance(checkpointer, ScopedCheckpointer):
            raise TypeError("checkpointer must be an agenthood ScopedCheckpointer")
        if checkpointer.fixed_scope is not None:
            raise ValueError(
                "checkpointer must not have a fixed scope: LangGraphAgent binds each caller's own"
            )
        if not callable(make_input) or not callable(make_output):
            raise TypeError("make_input and make_output must be callables")
        update: dict[str, Any] = {"checkpointer": checkpointer}
        if store is not None:
            update["store"] = store
        self.graph = graph.copy(update=update)
        self.name = name
        self.description = description
        if budget is not None:
            if not isinstance(budget, ThinkingBudget):
                raise TypeError("budget must be a ThinkingBudget")
            self.budget = budget
        self.checkpointer = checkpointer
        self._make_input = make_input
        self._make_output = make_output

    def thread_id(self, conversation_id: str | None) -> str:
        """The thread (inside the caller's scope) of a conversation of this agent."""
        return f"{quote(self.name, safe='')}/{conversation_id or DEFAULT_CONVERSATION}"

    def _config(self, ctx: RunContext) -> RunnableConfig:
        config: RunnableConfig = {
            "configurable": {"thread_id": self.thread_id(ctx.conversation_id)},
            "metadata": {"agenthood_run_id": ctx.run_id},
        }
        max_steps = ctx.thinking_budget.max_steps
        if max_steps is not None:
            config["recursion_limit"] = max(1, max_steps)
        return config

    async def run(self, task: str, ctx: RunContext) -> AgentResult:
        """Run the graph on the caller's thread; return the final state's answer."""
        config = self._config(ctx)
        values: Any = None
        with ScopedCheckpointer.bind_scope(ctx.scope):
            try:
                async for mode, chunk in self.graph.astream(
                    self._make_input(task, ctx),
                    config,
                    stream_mode=_MODES,
                ):
                    values = self._on_event(ctx, mode, chunk, values)
            except GraphRecursionError:
                if ctx.thinking_budget.max_steps is None:
                    raise
                raise BudgetExhausted("budget_exhausted:steps") from None
        output = self._make_output(values)
        return AgentResult(output, {"threadId": config["configurable"]["thread_id"]})

    def _on_event(self, ctx: RunContext, mode: str, chunk: Any, values: Any) -> Any:
        if mode == "tasks":
            if isinstance(chunk, dict) and "triggers" in chunk:  # a task starts
                ctx.step(str(chunk.get("name")))
            return values
        ctx.partial_output = self._make_output(chunk)
        return chunk
