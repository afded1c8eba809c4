"""The agent API: ``AgenthoodAPI``, the ``Agent`` protocol, LLM providers and failover."""

from __future__ import annotations

from agenthood_mw.api._agent import Agent, AgentResult, RunContext
from agenthood_mw.api._app import DEMO_PRICES, AgenthoodAPI
from agenthood_mw.api._failover import AllProvidersFailed, ProviderFailover
from agenthood_mw.api._offline import OFFLINE_MODEL, OfflineProvider
from agenthood_mw.api._openai import OpenAICompatibleProvider
from agenthood_mw.api._provider import (
    ChatMessage,
    Completion,
    LLMProvider,
    ProviderError,
    StreamingLLMProvider,
    Usage,
    record_usage,
)

__all__ = [
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
]
