"""The ``Agent`` protocol and the ``RunContext`` every run receives."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._identity import Identity
from agenthood_mw.api._provider import (
    ChatMessage,
    Completion,
    LLMProvider,
    StreamingLLMProvider,
    Usage,
)

if TYPE_CHECKING:
    from agenthood_mw.api._sse import EventSink
    from agenthood_mw.memory import ScopedMemory
    from agenthood_mw.metering import Meter, ThinkingBudget

__all__ = ["Agent", "AgentResult", "RunContext"]

T = TypeVar("T")


@runtime_checkable
class Agent(Protocol):
    """An agent served by :class:`~agenthood_mw.AgenthoodAPI`.

    ``run`` may be ``async def`` (awaited on the event loop) or a plain ``def`` (run in a worker
    thread; use :meth:`RunContext.call` there for the async memory and provider APIs). It returns
    the output text, or an :class:`AgentResult`.

    An optional ``budget`` attribute (a :class:`~agenthood_mw.ThinkingBudget`) sets this
    agent's own limits; a request can only lower them.

    Streaming is optional: every run can be streamed (its steps, tool calls and the model's
    text deltas are sent as they happen); an agent that also streams its answer calls
    :meth:`RunContext.emit` with successive pieces of its output.
    """

    name: str
    description: str

    def run(self, task: str, ctx: RunContext) -> Any:
        """Carry out ``task`` for ``ctx.identity``; return ``str`` or :class:`AgentResult`."""
        ...


@dataclass(frozen=True)
class AgentResult:
    """What an agent may return instead of a plain string.

    Attributes:
        output: the answer shown to the caller.
        data: extra JSON-serialisable details recorded in the run's trace (not in the
            response).
    """

    output: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything one agent run may use; built by the API from the authenticated identity only.

    Attributes:
        identity: the caller.
        scope: the :class:`MemoryScope` of the caller (``MemoryScope.for_identity(identity)``).
        memory: :class:`~agenthood_mw.memory.ScopedMemory` bound to ``scope``; there is no
            other way to reach memory from a run.
        meter: this run's :class:`~agenthood_mw.metering.Meter` (cost, steps, trace).
        thinking_budget: the effective budget (the agent's, lowered by the request's).
        provider: the LLM provider (often a :class:`~agenthood_mw.ProviderFailover`).
        run_id: the run's id (also in the response and the trace).
        agent: the agent's name.
        partial_output: set it as work progresses; it becomes the output when the run is
            stopped by its budget or its timeout.
        conversation_id: the request's optional ``conversationId`` (a name the caller picks
            for a conversation; it only ever selects among the caller's own threads).
        messages: the whole conversation when the run came through the OpenAI-compatible
            ``/v1/chat/completions`` (system messages and earlier turns; the task is the last
            user message); empty for ``POST /agents/{name}/run``.

    Once the API asks the run to stop (``run_timeout`` reached, the request cancelled),
    :attr:`stop_requested` is set and :meth:`step`, :meth:`complete` and :meth:`call` raise
    :class:`~agenthood_mw.metering.BudgetExhausted` with that reason: a sync agent (which
    cannot be cancelled) ends at its next call; a long CPU loop should check
    :attr:`stop_requested`.
    """

    identity: Identity
    scope: MemoryScope
    memory: ScopedMemory
    meter: Meter
    thinking_budget: ThinkingBudget
    provider: LLMProvider
    run_id: str
    agent: str
    partial_output: str = ""
    conversation_id: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    events: EventSink | None = field(default=None, repr=False)
    _stop_reason: str | None = field(default=None, init=False, repr=False)

    @property
    def streaming(self) -> bool:
        """Whether this run is streamed to its caller (:meth:`emit` is a no-op otherwise)."""
        return self.events is not None

    def emit(self, text: str) -> None:
        """Stream the next piece of the run's answer (an ``output`` event; the content of the
        OpenAI-compatible stream). The pieces should add up to the start of the output the run
        returns: what the returned output adds after them is sent when the run ends. No-op when
        the run is not streamed."""
        if not isinstance(text, str):
            raise TypeError("emit() takes the next piece of the answer as a str")
        if self.events is not None and text:
            self.events.emit("output", {"text": text})

    @property
    def stop_requested(self) -> str | None:
        """The reason the run was asked to stop (``"timeout"`` ...), or ``None``."""
        return self._stop_reason

    def request_stop(self, reason: str) -> None:
        """Ask the run to stop: later :meth:`step`, :meth:`complete` and :meth:`call` raise
        :class:`~agenthood_mw.metering.BudgetExhausted` (``reason``). The first reason wins."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def _check_stop(self) -> None:
        reason = self._stop_reason
        if reason is None and self.meter.closed:
            reason = "run_finished"  # the run's record is already frozen
        if reason is not None:
            from agenthood_mw.metering import BudgetExhausted

            raise BudgetExhausted(reason)

    def step(self, name: str, **attrs: Any) -> None:
        """Check the budget, then record one reasoning step in the trace.

        Raises :class:`~agenthood_mw.metering.BudgetExhausted` when the budget forbids
        another step, or when the run was asked to stop; the API turns it into ``stopReason``
        (the run is not an error).
        """
        self._check_stop()
        self.meter.check_budget()
        self.meter.step(name, **attrs)
        if self.events is not None:
            step = {"step": self.meter.totals.steps, "name": name, "attrs": attrs}
            self.events.emit("step", step)

    def tool_call(
        self,
        name: str,
        *,
        arguments: Any = None,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Record a tool call in the trace (and stream it as a ``tool_call`` event)."""
        self.meter.tool_call(name, arguments=arguments, result=result, error=error)
        if self.events is not None:
            call = {"name": name, "arguments": arguments, "result": result, "error": error}
            self.events.emit("tool_call", call)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """One model call under the thinking budget.

        The budget is checked first (the step limit excepted: the call belongs to the step
        recorded before it); when it has a token limit, ``max_tokens`` is capped to what
        remains of it. Usage is recorded on :attr:`meter` by the provider (the meter is bound
        as ``current_meter()`` for the call, also when the agent runs outside the request's
        context). Raises ``BudgetExhausted`` once the run was asked to stop.

        In a streamed run the answer's text is sent as ``delta`` events: as the provider
        streams it when it is a :class:`~agenthood_mw.api.StreamingLLMProvider`, else in one
        piece when the call returns.
        """
        self._check_stop()
        self._check_call_budget()
        limit = self.thinking_budget.max_tokens
        if limit is not None:
            totals = self.meter.totals
            remaining = max(1, limit - totals.input_tokens - totals.output_tokens)
            max_tokens = remaining if max_tokens is None else min(max_tokens, remaining)
        from agenthood_mw.metering import reset_meter, set_meter

        token = set_meter(self.meter)  # the provider records usage on this run's meter
        try:
            # a plain attribute test: isinstance() on the runtime-checkable protocol took
            # ~20 µs per call (benchmarks/bench_stream.py)
            if self.events is not None and callable(getattr(self.provider, "stream", None)):
                provider = cast("StreamingLLMProvider", self.provider)
                return await self._streamed(provider, messages, model, max_tokens, temperature)
            completion = await self.provider.complete(
                messages, model=model, max_tokens=max_tokens, temperature=temperature
            )
        finally:
            reset_meter(token)
        if self.events is not None and completion.text:
            self.events.emit("delta", {"text": completion.text})
        return completion

    async def _streamed(
        self,
        provider: StreamingLLMProvider,
        messages: Sequence[ChatMessage],
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> Completion:
        """One streamed model call: each delta is sent as it comes; the usage the provider
        records on the meter (also when the run is cancelled mid-stream) is the completion's."""
        assert self.events is not None
        before = self.meter.totals
        parts: list[str] = []
        deltas = provider.stream(
            messages, model=model, max_tokens=max_tokens, temperature=temperature
        )
        async with contextlib.aclosing(deltas):  # type: ignore[type-var]
            async for delta in deltas:
                parts.append(delta)
                self.events.emit("delta", {"text": delta})
        after = self.meter.totals
        return Completion(
            text="".join(parts),
            usage=Usage(
                input_tokens=after.input_tokens - before.input_tokens,
                output_tokens=after.output_tokens - before.output_tokens,
            ),
            model=model or str(getattr(provider, "model", "") or provider.name),
            provider=provider.name,
        )

    def _check_call_budget(self) -> None:
        # A model call belongs to the step that precedes it, so the step limit does not stop it
        # (max_steps=3 allows three steps with their calls); every other limit does.
        meter = self.meter
        budget = meter.thinking_budget
        totals = meter.totals
        if budget is None or budget.max_steps is None or totals.steps < budget.max_steps:
            meter.check_budget()
            return
        reason = budget.exhausted(
            steps=0,
            tokens=totals.input_tokens + totals.output_tokens,
            cost_nanos=totals.cost_nanos,
            elapsed=meter.elapsed(),
        )
        if reason is not None:
            from agenthood_mw.metering import BudgetExhausted

            if meter.stop_reason is None:
                meter.stop_reason = reason
            raise BudgetExhausted(reason)

    def call(self, func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """From a sync agent (worker thread): run an async API on the server's event loop,
        e.g. ``ctx.call(ctx.memory.facts.put, "k", "v")`` or ``ctx.call(ctx.complete, msgs)``.

        Raises ``BudgetExhausted`` once the run was asked to stop (nothing is written or spent
        after the run's timeout).
        """
        import anyio.from_thread

        self._check_stop()
        return anyio.from_thread.run(func, *args)
