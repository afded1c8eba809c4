"""OpenAI Agents SDK hooks: an ``Agent`` whose model client calls the fake provider through a
metered transport; agent and tool names land in the run's trace, the call is charged once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider

from agenthood_mw import MemoryScope
from agenthood_mw.metering import Metering, RunRecord

httpx2 = pytest.importorskip("httpx2")
openai = pytest.importorskip("openai")
agents = pytest.importorskip("agents")

from agenthood_mw.capture.httpx2 import MeteredAsyncTransport  # noqa: E402
from agenthood_mw.capture.openai_agents import MeteringRunHooks  # noqa: E402

SCOPE = MemoryScope.operator(user="ag")


@pytest.fixture
def metering() -> Iterator[Metering]:
    agents.set_tracing_disabled(True)  # no export to the OpenAI tracing backend
    m = Metering(prices=PRICES)
    yield m
    m.close()


def _events(record: RunRecord, kind: str) -> list[dict[str, Any]]:
    return [e for e in record.event_dicts() if e.get("type") == kind]


def _agent(p: Provider) -> Any:
    client = openai.AsyncOpenAI(
        api_key="k",
        base_url=p.url + "/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
    )
    model = agents.OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
    return agents.Agent(name="helper", instructions="Be brief.", model=model)


async def test_agent_run_traced_and_charged_once(fresh: Provider, metering: Metering) -> None:
    async with metering.arun(SCOPE, agent="bot") as meter:
        result = await agents.Runner.run(_agent(fresh), "hi", hooks=MeteringRunHooks())
        totals = meter.totals
        record = meter.finish()
    assert result.final_output
    hits = fresh.hits("/chat/completions")
    assert len(hits) == 1
    assert totals.model_calls == 1
    assert totals.cost_nanos == expected_nanos("gpt-4o-mini", hits)
    assert [e["attrs"] for e in _events(record, "agents_agent")] == [{"name": "helper"}]
    assert [e["attrs"] for e in _events(record, "agents_llm")] == [
        {"agent": "helper", "model": "gpt-4o-mini"}
    ]


async def test_tool_and_handoff_names_traced(metering: Metering) -> None:
    @agents.function_tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return city

    hooks = MeteringRunHooks()
    first, second = agents.Agent(name="triage"), agents.Agent(name="billing")
    async with metering.arun(SCOPE) as meter:
        await hooks.on_tool_start(None, first, lookup)
        await hooks.on_handoff(None, first, second)
        record = meter.finish()
    assert [e["attrs"] for e in _events(record, "agents_tool")] == [
        {"name": "lookup", "agent": "triage"}
    ]
    assert [e["attrs"] for e in _events(record, "agents_handoff")] == [
        {"source": "triage", "target": "billing"}
    ]


async def test_outside_a_meter_nothing_happens(fresh: Provider) -> None:
    agents.set_tracing_disabled(True)
    result = await agents.Runner.run(_agent(fresh), "hi", hooks=MeteringRunHooks())
    assert result.final_output
