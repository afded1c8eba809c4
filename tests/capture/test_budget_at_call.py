"""Budgets at the call: a call the run may not make raises ``BudgetExhausted`` from the
transport, the SDK does not retry or wrap it, and the provider never sees the request."""

from __future__ import annotations

import httpx2
import pytest
from capture_kit import bound_meter
from provider_server import Provider

from agenthood_mw import ThinkingBudget
from agenthood_mw.capture.httpx2 import MeteredAsyncTransport, MeteredTransport
from agenthood_mw.metering import BudgetExhausted

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


def test_looping_agent_is_stopped_before_the_call_that_would_exceed(fresh: Provider) -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
        max_retries=5,
    )
    calls = 0

    def agent_loop() -> None:
        nonlocal calls
        while True:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}], max_tokens=10
            )
            calls += 1

    # Each call uses 110 prompt + 10 output tokens: the budget allows 3 calls (360 > 300).
    with (
        bound_meter(thinking_budget=ThinkingBudget(max_tokens=300)) as meter,
        pytest.raises(BudgetExhausted) as err,
    ):
        agent_loop()
    assert err.value.reason == "budget_exhausted:tokens"
    assert calls == 3
    assert len(fresh.hits()) == 3  # the 4th call never reached the provider, nor a retry
    assert meter.totals.model_calls == 3


async def test_async_anthropic_refused_call_sends_nothing(fresh: Provider) -> None:
    client = anthropic.AsyncAnthropic(
        api_key="k",
        base_url=fresh.url,
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
        max_retries=5,
    )
    with bound_meter(thinking_budget=ThinkingBudget(max_steps=0)) as meter:
        meter.step("think")
        with pytest.raises(BudgetExhausted):
            await client.messages.create(
                model="claude-haiku", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    assert fresh.hits() == []
    assert meter.stop_reason == "budget_exhausted:steps"


def test_finished_run_refuses_a_late_call(fresh: Provider) -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
    )
    with bound_meter() as meter:
        meter.finish()
        with pytest.raises(BudgetExhausted):
            client.embeddings.create(model="text-embedding-3-small", input="late")
    assert fresh.hits() == []
