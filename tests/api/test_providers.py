"""OpenAI-compatible provider, offline provider and failover against real local HTTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from agenthood_mw._core.failover import BreakerState, FailureKind
from agenthood_mw.api import (
    AllProvidersFailed,
    LLMProvider,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderError,
    ProviderFailover,
    StreamingLLMProvider,
)

if TYPE_CHECKING:
    from .conftest import LLMServer

MESSAGES = [{"role": "user", "content": "hello there"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(url: str, name: str, timeout: float = 2.0) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        model="test-model", base_url=url, api_key="sk-test", name=name, timeout=timeout
    )


async def test_openai_provider_parses_text_and_usage(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    p = provider(server.url, "primary")
    try:
        completion = await p.complete(MESSAGES, max_tokens=50, temperature=0.2)
    finally:
        await p.aclose()
    assert completion.text == "primary says: hello there"
    assert completion.provider == "primary"
    assert completion.model == "test-model"
    assert completion.finish_reason == "stop"
    assert completion.usage.input_tokens == 31
    assert completion.usage.output_tokens == 9
    assert completion.usage.cached_input_tokens == 5
    assert server.requests[0]["max_tokens"] == 50
    assert server.requests[0]["messages"] == MESSAGES
    assert server.auth_headers == ["Bearer sk-test"]
    assert isinstance(p, LLMProvider) and isinstance(p, StreamingLLMProvider)


async def test_openai_provider_streams(llm_server: Callable[[str], LLMServer]) -> None:
    server = llm_server("primary")
    p = provider(server.url, "primary")
    try:
        chunks = [chunk async for chunk in p.stream(MESSAGES)]
    finally:
        await p.aclose()
    assert "".join(chunks).strip() == "primary says: hello there"
    assert len(chunks) == 4


@pytest.mark.parametrize(
    ("mode", "kind", "status", "retryable"),
    [
        (500, FailureKind.HTTP, 500, True),
        (503, FailureKind.HTTP, 503, True),
        (429, FailureKind.HTTP, 429, True),
        (408, FailureKind.HTTP, 408, True),
        (400, FailureKind.HTTP, 400, False),
        (404, FailureKind.HTTP, 404, False),
        (422, FailureKind.HTTP, 422, False),
        ("garbage", FailureKind.PROTOCOL, None, True),
        ("hang", FailureKind.TIMEOUT, None, True),
    ],
)
async def test_openai_provider_classifies_failures(
    llm_server: Callable[[str], LLMServer],
    mode: str | int,
    kind: FailureKind,
    status: int | None,
    retryable: bool,
) -> None:
    server = llm_server("primary")
    server.mode = mode
    server.hang_seconds = 1.5
    p = provider(server.url, "primary", timeout=0.3)
    try:
        with pytest.raises(ProviderError) as info:
            await p.complete(MESSAGES)
    finally:
        await p.aclose()
    assert info.value.kind is kind
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert info.value.provider == "primary"


async def test_openai_provider_connection_refused(refused_url: str) -> None:
    p = provider(refused_url, "down")
    try:
        with pytest.raises(ProviderError) as info:
            await p.complete(MESSAGES)
    finally:
        await p.aclose()
    assert info.value.kind is FailureKind.CONNECTION and info.value.retryable


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": ""}, ValueError),
        ({"model": "m", "base_url": "ftp://x"}, ValueError),
        ({"model": "m", "timeout": 0}, ValueError),
        ({"model": "m", "timeout": "1s"}, TypeError),
        ({"model": "m", "api_key": ""}, ValueError),
    ],
)
def test_openai_provider_options_validated(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        OpenAICompatibleProvider(**kwargs)  # type: ignore[arg-type]


async def test_messages_are_validated_before_any_request(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    p = provider(server.url, "primary")
    try:
        with pytest.raises(ValueError, match="role"):
            await p.complete([{"role": "wizard", "content": "x"}])
        with pytest.raises(TypeError):
            await p.complete("hello")  # type: ignore[arg-type]
    finally:
        await p.aclose()
    assert server.hits == 0


@pytest.mark.parametrize("failure", [500, 502, 429, 408, "hang", "refused"])
async def test_failover_moves_on_for_retryable_failures(
    llm_server: Callable[[str], LLMServer], refused_url: str, failure: str | int
) -> None:
    primary_server = llm_server("primary")
    secondary_server = llm_server("secondary")
    primary_server.mode = "ok" if failure == "refused" else failure
    primary_server.hang_seconds = 1.5
    primary_url = refused_url if failure == "refused" else primary_server.url
    chain = ProviderFailover(
        [provider(primary_url, "primary", 0.3), provider(secondary_server.url, "secondary")]
    )
    try:
        completion = await chain.complete(MESSAGES)
    finally:
        await chain.aclose()
    assert completion.provider == "secondary"
    assert completion.text == "secondary says: hello there"
    assert secondary_server.hits == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_failover_raises_client_errors(
    llm_server: Callable[[str], LLMServer], status: int
) -> None:
    primary_server = llm_server("primary")
    secondary_server = llm_server("secondary")
    primary_server.mode = status
    chain = ProviderFailover(
        [provider(primary_server.url, "primary"), provider(secondary_server.url, "secondary")]
    )
    try:
        with pytest.raises(ProviderError) as info:
            await chain.complete(MESSAGES)
    finally:
        await chain.aclose()
    assert info.value.status == status and not info.value.retryable
    assert secondary_server.hits == 0
    assert chain.breaker_state("primary") is BreakerState.CLOSED


async def test_circuit_breaker_cools_down_and_retries_later(
    llm_server: Callable[[str], LLMServer],
) -> None:
    primary_server = llm_server("primary")
    secondary_server = llm_server("secondary")
    primary_server.mode = 503
    clock = Clock()
    chain = ProviderFailover(
        [provider(primary_server.url, "primary"), provider(secondary_server.url, "secondary")],
        failure_threshold=2,
        cooldown=30,
        clock=clock,
    )
    try:
        for _ in range(2):
            assert (await chain.complete(MESSAGES)).provider == "secondary"
        assert primary_server.hits == 2
        assert chain.breaker_state("primary") is BreakerState.OPEN
        # cooling down: the primary is not even contacted
        for _ in range(3):
            assert (await chain.complete(MESSAGES)).provider == "secondary"
        assert primary_server.hits == 2
        # cooldown over and the primary recovered: one trial, then it is primary again
        primary_server.mode = "ok"
        clock.now += 30
        assert chain.breaker_state("primary") is BreakerState.HALF_OPEN
        assert (await chain.complete(MESSAGES)).provider == "primary"
        assert chain.breaker_state("primary") is BreakerState.CLOSED
        assert primary_server.hits == 3
        assert secondary_server.hits == 5
    finally:
        await chain.aclose()


async def test_failed_trial_doubles_the_cooldown(llm_server: Callable[[str], LLMServer]) -> None:
    primary_server = llm_server("primary")
    secondary_server = llm_server("secondary")
    primary_server.mode = 500
    clock = Clock()
    chain = ProviderFailover(
        [provider(primary_server.url, "primary"), provider(secondary_server.url, "secondary")],
        failure_threshold=1,
        cooldown=10,
        clock=clock,
    )
    try:
        await chain.complete(MESSAGES)
        clock.now += 10
        await chain.complete(MESSAGES)  # trial fails
        assert primary_server.hits == 2
        clock.now += 10
        assert chain.breaker_state("primary") is BreakerState.OPEN
        await chain.complete(MESSAGES)
        assert primary_server.hits == 2
        clock.now += 10
        await chain.complete(MESSAGES)
        assert primary_server.hits == 3
    finally:
        await chain.aclose()


async def test_all_providers_down(llm_server: Callable[[str], LLMServer], refused_url: str) -> None:
    server = llm_server("secondary")
    server.mode = 500
    clock = Clock()
    chain = ProviderFailover(
        [provider(refused_url, "primary"), provider(server.url, "secondary")],
        failure_threshold=1,
        cooldown=20,
        clock=clock,
    )
    try:
        with pytest.raises(AllProvidersFailed) as info:
            await chain.complete(MESSAGES)
        assert info.value.attempts == (("primary", "connection_error"), ("secondary", "HTTP 500"))
        clock.now += 5
        with pytest.raises(AllProvidersFailed) as info:
            await chain.complete(MESSAGES)
        assert [o for _, o in info.value.attempts] == ["skipped: cooling down"] * 2
        assert info.value.retry_after == pytest.approx(15)
        assert server.hits == 1
    finally:
        await chain.aclose()


def test_failover_options_validated() -> None:
    offline = OfflineProvider()
    with pytest.raises(ValueError, match="providers"):
        ProviderFailover([])
    with pytest.raises(TypeError, match="providers"):
        ProviderFailover([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="duplicate"):
        ProviderFailover([offline, OfflineProvider()])
    with pytest.raises(ValueError, match="failure_threshold"):
        ProviderFailover([offline], failure_threshold=0)
    with pytest.raises(ValueError, match="cooldown"):
        ProviderFailover([offline], cooldown=0)


async def test_offline_provider_is_deterministic_and_labelled() -> None:
    offline = OfflineProvider()
    plan = [
        {"role": "system", "content": "Reply with a numbered list of steps"},
        {"role": "user", "content": "fix the bug"},
    ]
    a = await offline.complete(plan)
    b = await offline.complete(plan)
    other = await offline.complete([plan[0], {"role": "user", "content": "a different task"}])
    assert a == b
    assert a.text.startswith("[offline] ")
    assert a.provider == "offline" and a.model == "agenthood-offline-1"
    lines = a.text.removeprefix("[offline] ").splitlines()
    assert 3 <= len(lines) <= 5
    assert [line.split(". ", 1)[0] for line in lines] == [str(i + 1) for i in range(len(lines))]
    assert other.text.startswith("[offline] 1. ")
    one_line = await offline.complete([{"role": "user", "content": "Task: x\nStep 2: fix it"}])
    assert one_line.text == "[offline] done: Step 2: fix it"
    # ~4 characters per token, plus a per-message overhead
    assert a.usage.input_tokens == (9 + 4) + (3 + 4)
    assert a.usage.output_tokens == -(-len(a.text) // 4)
    short = await offline.complete(plan, max_tokens=3)
    assert short.finish_reason == "length" and short.usage.output_tokens <= 3
    assert offline.calls == 5


async def test_offline_provider_responder_and_metering() -> None:
    offline = OfflineProvider(name="scripted", responder=lambda msgs: msgs[-1]["content"].upper())
    completion = await offline.complete([{"role": "user", "content": "echo"}])
    assert completion.text == "[offline] ECHO" and completion.provider == "scripted"
    with pytest.raises(TypeError):
        OfflineProvider(responder="nope")  # type: ignore[arg-type]


async def test_half_open_lets_exactly_one_concurrent_trial_through(
    llm_server: Callable[[str], LLMServer],
) -> None:
    primary_server = llm_server("primary")
    secondary_server = llm_server("secondary")
    primary_server.mode = 500
    clock = Clock()
    chain = ProviderFailover(
        [provider(primary_server.url, "primary"), provider(secondary_server.url, "secondary")],
        failure_threshold=1,
        cooldown=10,
        clock=clock,
    )
    try:
        await chain.complete(MESSAGES)  # opens the primary's breaker
        assert primary_server.hits == 1
        clock.now += 10
        primary_server.mode = "hang"  # the trial is slow (then answers): others arrive meanwhile
        primary_server.hang_seconds = 0.5
        results = await asyncio.gather(*(chain.complete(MESSAGES) for _ in range(6)))
    finally:
        await chain.aclose()
    assert primary_server.hits == 2  # exactly one trial request
    assert sorted(r.provider for r in results) == ["primary"] + ["secondary"] * 5
    assert chain.breaker_state("primary") is BreakerState.CLOSED
