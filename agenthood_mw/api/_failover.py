"""``ProviderFailover``: try providers in order, skip the ones cooling down.

The decisions (which failures move on, breaker states) live in
:mod:`agenthood_mw._core.failover`; this shell only calls providers, reads the clock and writes
one ``llm_provider`` tool call per attempt in the run's trace.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from agenthood_mw._core.failover import BreakerConfig, BreakerState, CircuitBreaker, FailureKind
from agenthood_mw.api._provider import ChatMessage, Completion, LLMProvider, ProviderError

__all__ = ["AllProvidersFailed", "ProviderFailover"]


class AllProvidersFailed(ProviderError):
    """Every provider of a :class:`ProviderFailover` failed or was cooling down.

    Attributes:
        attempts: ``(provider name, outcome)`` for each provider, in order.
        retry_after: seconds until the first cooled-down provider may be tried again.
    """

    def __init__(
        self, attempts: Sequence[tuple[str, str]], *, name: str, retry_after: float | None
    ) -> None:
        summary = ", ".join(f"{p}: {o}" for p, o in attempts) or "no provider"
        super().__init__(
            f"all providers failed ({summary})", provider=name, kind=FailureKind.CONNECTION
        )
        self.attempts = tuple(attempts)
        self.retry_after = retry_after


def _trace_attempt(provider: str, index: int, outcome: str, **attrs: Any) -> None:
    """One ``llm_provider`` tool call in the current run's trace (not a reasoning step, so
    failover never eats the thinking budget's step allowance)."""
    try:
        from agenthood_mw.metering import current_meter
    except ImportError:  # pragma: no cover - metering is part of the package
        return
    try:
        meter = current_meter()
    except LookupError:
        return
    error = attrs.pop("error", None)
    meter.tool_call(
        "llm_provider",
        arguments={"provider": provider, "attempt": index + 1},
        result={"outcome": outcome, **attrs},
        error=error,
    )


class ProviderFailover:
    """An :class:`~agenthood_mw.api.LLMProvider` that fails over along a chain.

    On connection errors, timeouts, 408, 429 and 5xx the next provider is tried; on other 4xx
    (400, 404, 422 ...) the error is raised at once (another provider would refuse the same
    request). After ``failure_threshold`` consecutive failures a provider is cooled down for
    ``cooldown`` seconds (doubling up to ``max_cooldown`` while it keeps failing), then one
    trial request is let through. Every attempt, skipped or tried, is an ``llm_provider``
    tool call in the current run's trace (a tool call, not a step: failover does not use up
    the thinking budget's steps).

    Args:
        providers: the chain, primary first (at least one; names must be unique).
        failure_threshold, cooldown, max_cooldown: circuit-breaker settings.
        clock: monotonic seconds (inject a fake one in tests).
        name: this chain's name.
    """

    def __init__(
        self,
        providers: Sequence[LLMProvider],
        *,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        max_cooldown: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "failover",
    ) -> None:
        raw: object = providers
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
            raise TypeError("providers: expected a list of LLMProvider objects")
        if not providers:
            raise ValueError("providers: at least one provider is required")
        names: set[str] = set()
        for i, provider in enumerate(providers):
            if not isinstance(provider, LLMProvider):
                raise TypeError(f"providers[{i}]: {provider!r} is not an LLMProvider")
            if provider.name in names:
                raise ValueError(f"providers: duplicate provider name {provider.name!r}")
            names.add(provider.name)
        if not callable(clock):
            raise TypeError("clock: must be a callable returning seconds")
        if not isinstance(name, str) or not name:
            raise ValueError("name: must be a non-empty str")
        config = BreakerConfig(
            failure_threshold=failure_threshold, cooldown=cooldown, max_cooldown=max_cooldown
        )
        self.name = name
        self.providers: tuple[LLMProvider, ...] = tuple(providers)
        self._breakers = {p.name: CircuitBreaker(config) for p in self.providers}
        self._clock = clock

    def breaker_state(self, provider_name: str) -> BreakerState:
        """The breaker state of one provider of the chain, now."""
        return self._breakers[provider_name].state(self._clock())

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """Answer with the first provider that can; raise :class:`AllProvidersFailed` when
        none could, or the provider's :class:`ProviderError` for a non-retryable refusal.

        ``model`` is passed to every provider; leave it ``None`` to let each provider use its
        own default model (providers of a chain rarely share model names).
        """
        attempts: list[tuple[str, str]] = []
        for index, provider in enumerate(self.providers):
            breaker = self._breakers[provider.name]
            if not breaker.allow(self._clock()):
                attempts.append((provider.name, "skipped: cooling down"))
                _trace_attempt(provider=provider.name, index=index, outcome="skipped")
                continue
            try:
                completion = await provider.complete(
                    messages, model=model, max_tokens=max_tokens, temperature=temperature
                )
            except ProviderError as exc:
                if not exc.retryable:
                    breaker.release()
                    _trace_attempt(
                        provider=provider.name,
                        index=index,
                        outcome="refused",
                        error=exc.kind.value,
                        status=exc.status,
                    )
                    raise
                breaker.record_failure(self._clock())
                outcome = exc.kind.value if exc.status is None else f"HTTP {exc.status}"
                attempts.append((provider.name, outcome))
                _trace_attempt(
                    provider=provider.name,
                    index=index,
                    outcome="failed",
                    error=exc.kind.value,
                    status=exc.status,
                )
                continue
            except BaseException:
                breaker.release()
                raise
            breaker.record_success(self._clock())
            _trace_attempt(
                provider=provider.name, index=index, outcome="ok", model=completion.model
            )
            return completion
        retry_times = [t for b in self._breakers.values() if (t := b.retry_at()) is not None]
        retry_after = max(0.0, min(retry_times) - self._clock()) if retry_times else None
        raise AllProvidersFailed(attempts, name=self.name, retry_after=retry_after)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """Stream the answer of the first provider that can.

        A provider fails over only until its first delta arrives (the same rules and breakers
        as :meth:`complete`); once text was passed on, its errors are raised. A provider
        without ``stream()`` answers in one piece.
        """
        attempts: list[tuple[str, str]] = []
        for index, provider in enumerate(self.providers):
            breaker = self._breakers[provider.name]
            if not breaker.allow(self._clock()):
                attempts.append((provider.name, "skipped: cooling down"))
                _trace_attempt(provider=provider.name, index=index, outcome="skipped")
                continue
            try:
                first, rest = await _open_stream(provider, messages, model, max_tokens, temperature)
            except ProviderError as exc:
                self._failed(provider.name, index, exc, attempts)
                continue
            except BaseException:
                breaker.release()
                raise
            breaker.record_success(self._clock())
            _trace_attempt(provider=provider.name, index=index, outcome="ok", streamed=True)
            try:
                if first:
                    yield first
                async for delta in rest:
                    yield delta
            finally:  # also when the consumer stops early: the provider records its usage
                closer = getattr(rest, "aclose", None)
                if closer is not None:
                    await closer()
            return
        retry_times = [t for b in self._breakers.values() if (t := b.retry_at()) is not None]
        retry_after = max(0.0, min(retry_times) - self._clock()) if retry_times else None
        raise AllProvidersFailed(attempts, name=self.name, retry_after=retry_after)

    def _failed(
        self, name: str, index: int, exc: ProviderError, attempts: list[tuple[str, str]]
    ) -> None:
        """Book one failed attempt; re-raise a refusal that no other provider would change."""
        breaker = self._breakers[name]
        if not exc.retryable:
            breaker.release()
            _trace_attempt(
                provider=name,
                index=index,
                outcome="refused",
                error=exc.kind.value,
                status=exc.status,
            )
            raise exc
        breaker.record_failure(self._clock())
        attempts.append((name, exc.kind.value if exc.status is None else f"HTTP {exc.status}"))
        _trace_attempt(
            provider=name, index=index, outcome="failed", error=exc.kind.value, status=exc.status
        )

    async def aclose(self) -> None:
        """Close every provider of the chain."""
        for provider in self.providers:
            await provider.aclose()


async def _no_more() -> AsyncIterator[str]:
    return
    yield  # an empty async generator


async def _open_stream(
    provider: LLMProvider,
    messages: Sequence[ChatMessage],
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
) -> tuple[str, AsyncIterator[str]]:
    """Start ``provider``'s answer: ``(first delta, the rest)``; a provider without
    ``stream()`` answers whole (``(text, nothing)``). Raises what the provider raises before
    its first delta."""
    stream = getattr(provider, "stream", None)
    if not callable(stream):
        completion = await provider.complete(
            messages, model=model, max_tokens=max_tokens, temperature=temperature
        )
        return completion.text, _no_more()
    deltas: AsyncIterator[str] = stream(
        messages, model=model, max_tokens=max_tokens, temperature=temperature
    )
    try:
        first = await deltas.__anext__()
    except StopAsyncIteration:
        return "", _no_more()
    except BaseException:
        closer = getattr(deltas, "aclose", None)
        if closer is not None:
            await closer()
        raise
    return first, deltas
