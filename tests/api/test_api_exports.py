"""Pins the public names of ``agenthood_mw.api``."""

from __future__ import annotations

import agenthood_mw.api
import agenthood_mw.api.demo

EXPECTED = {
    "DEMO_PRICES",
    "OFFLINE_MODEL",
    "Agent",
    "AgentResult",
    "AgenthoodAPI",
    "AllProvidersFailed",
    "ChatMessage",
    "Completion",
    "LLMProvider",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "ProviderError",
    "ProviderFailover",
    "RunContext",
    "StreamingLLMProvider",
    "Usage",
    "record_usage",
}


def test_api_all_is_pinned_and_resolves() -> None:
    assert set(agenthood_mw.api.__all__) == EXPECTED
    for name in agenthood_mw.api.__all__:
        assert getattr(agenthood_mw.api, name) is not None, name


def test_demo_agents() -> None:
    agents = agenthood_mw.api.demo.demo_agents()
    assert [a.name for a in agents] == ["the-developer", "the-reviewer", "the-scribe"]
    assert all(isinstance(a, agenthood_mw.api.Agent) for a in agents)
