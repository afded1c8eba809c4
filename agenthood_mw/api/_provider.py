"""The ``LLMProvider`` protocol: chat completion in, text + token usage out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agenthood_mw._core.failover import FailureKind, should_fail_over
from agenthood_mw._core.pricing import cost_nanos_of, nanos_to_decimal

if TYPE_CHECKING:
    from agenthood_mw.metering import Meter, PriceTable

__all__ = [
    "ChatMessage",
    "Completion",
    "LLMProvider",
    "ProviderError",
    "StreamingLLMProvider",
    "Usage",
    "bound_meter",
    "check_priced",
    "record_usage",
    "validate_messages",
]

logger = logging.getLogger("agenthood_mw.api")

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
        model: the model that answered (as reported by the provider: OpenAI answers
            ``gpt-4o-mini`` with a dated snapshot such as ``gpt-4o-mini-2024-07-18``).
        provider: the name of the provider that answered (after failover: the one that won).
        finish_reason: ``"stop"``, ``"length"`` ... when the provider says.
        requested_model: the model name that was asked for, when it may differ from
            ``model``; :func:`record_usage` prices by it when the price table does not know
            the answered name.
    """

    text: str
    usage: Usage
    model: str
    provider: str
    finish_reason: str | None = None
    requested_model: str | None = None


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
        """Yield text deltas; usage is recorded when the stream ends, also when the consumer
        stops early (then estimated if the server has not reported it yet)."""
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


def bound_meter() -> Meter | None:
    """The current request's meter, or ``None`` outside a metered request."""
    from agenthood_mw.metering import current_meter

    try:
        return current_meter()
    except LookupError:
        return None


def check_priced(model: str, provider: str, meter: Meter | None = None) -> None:
    """Before a model call: raise :class:`~agenthood_mw.metering.UnknownModelError` when the
    meter's price table cannot price ``model`` (policy ``unknown="error"``), so the call is
    refused before anything is spent. ``meter`` defaults to the current one; no-op without."""
    meter = bound_meter() if meter is None else meter
    if meter is not None and meter.prices.unknown == "error":
        meter.prices.price(model, provider)


def _known(prices: PriceTable, model: str, provider: str) -> bool:
    return model in prices or f"{provider}/{model}" in prices


def record_usage(completion: Completion, *, meter: Meter | None = None) -> None:
    """Charge ``completion`` to ``meter`` (default: the current request's meter, if any).

    The usage is recorded under the answered model name (``completion.model``, as the trace
    and ledger show it) and priced by that name when the price table knows it, else by
    ``completion.requested_model`` (a dated snapshot answering for its alias). Usage that
    cannot be priced at all is still recorded, at zero cost, and logged as an error: the
    provider has already been paid, so raising here would only lose the tokens.
    """
    from agenthood_mw.metering import UnknownModelError

    if meter is None:
        meter = bound_meter()
        if meter is None:
            return
    prices = meter.prices
    usage = completion.usage
    name = completion.model
    requested = completion.requested_model
    if requested and requested != name and not _known(prices, name, completion.provider):
        name = requested
    cost: Decimal | None = None
    try:
        price = prices.price(name, completion.provider)
    except UnknownModelError:
        logger.error(
            "no price for model %r (provider %r, run %s): %d input + %d output tokens "
            "recorded at zero cost; add the model to the PriceTable",
            name,
            completion.provider,
            meter.run_id,
            usage.input_tokens,
            usage.output_tokens,
        )
        cost = Decimal(0)
    else:
        if name != completion.model:
            cost = nanos_to_decimal(
                cost_nanos_of(
                    price,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_input_tokens,
                    usage.reasoning_tokens,
                    0,
                )
            )
    meter.record(
        model=completion.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        provider=completion.provider,
        cost=cost,
    )
