"""The ``LLMProvider`` protocol: chat completion in, text + token usage out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agenthood_mw._core.failover import FailureKind, should_fail_over

__all__ = [
    "ChatMessage",
    "Completion",
    "LLMProvider",
    "ProviderError",
    "StreamingLLMProvider",
    "Usage",
    "record_usage",
    "validate_messages",
]

#: One chat message in the OpenAI format: ``{"role": "user", "content": "..."}``.
ChatMessage = Mapping[str, Any]

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@dataclass(frozen=True)
class Usage:
    """Token counts of one completion, as reported by the provider."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Usage.{name} must be a non-negative int, got {value!r}")


@dataclass(frozen=True)
class Completion:
    """The answer of one chat completion.

    Attributes:
        text: the assistant message's text.
        usage: token counts (what the meter charges).
        model: the model that answered (as reported by the provider).
        provider: the name of the provider that answered (after failover: the one that won).
        finish_reason: ``"stop"``, ``"length"`` ... when the provider says.
    """

    text: str
    usage: Usage
    model: str
    provider: str
    finish_reason: str | None = None


class ProviderError(Exception):
    """One provider failed to answer.

    Attributes:
        provider: the provider's name.
        kind: connection error, timeout, HTTP error or invalid response.
        status: the HTTP status for :attr:`FailureKind.HTTP`.
        retryable: whether :class:`~agenthood_mw.ProviderFailover` moves on to the next
            provider (connection errors, timeouts, 408, 429, 5xx) or raises (400, 404, 422 ...).
    """

    def __init__(
        self, message: str, *, provider: str, kind: FailureKind, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.kind = kind
        self.status = status
        self.retryable = should_fail_over(kind, status)


@runtime_checkable
class LLMProvider(Protocol):
    """A chat-completion model endpoint.

    Implementations record the completion's usage on the current request's meter with
    :func:`record_usage` (a no-op outside a metered request) and raise :class:`ProviderError`
    on failure.
    """

    name: str

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """Answer ``messages``; ``model`` overrides the provider's default model."""
        ...

    async def aclose(self) -> None:
        """Release connections (idempotent)."""
        ...


@runtime_checkable
class StreamingLLMProvider(LLMProvider, Protocol):
    """A provider that can also stream the answer's text (optional capability)."""

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """Yield text deltas; usage is recorded when the stream ends."""
        ...


def validate_messages(messages: object) -> list[dict[str, Any]]:
    """Check a chat message list and return plain dict copies (TypeError/ValueError)."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} mappings")
    if not messages:
        raise ValueError("messages must not be empty")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"messages[{i}] must be a mapping")
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {sorted(_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise TypeError(f"messages[{i}]['content'] must be a str")
        out.append(dict(message))
    return out


def record_usage(completion: Completion) -> None:
    """Charge ``completion`` to the current request's meter, if there is one."""
    try:
        from agenthood_mw.metering import current_meter
    except ImportError:  # pragma: no cover - metering is part of the package
        return
    try:
        meter = current_meter()
    except LookupError:
        return
    usage = completion.usage
    meter.record(
        model=completion.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        provider=completion.provider,
    )
