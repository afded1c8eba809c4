"""agenthood-mw: turn an LLM-agent prototype into a multi-user service.

Authentication, per-user rate limiting, cost metering and a memory tier in which every read and
write carries a mandatory :class:`MemoryScope`, as pure-ASGI middleware (the WSGI twins, same
names and keywords, are in :mod:`agenthood_mw.wsgi`), plus the agent API :class:`AgenthoodAPI`.
"""

from __future__ import annotations

from agenthood_mw._context import current_identity
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._identity import Identity
from agenthood_mw._version import __version__
from agenthood_mw.api import (
    Agent,
    AgenthoodAPI,
    LLMProvider,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderFailover,
    RunContext,
)
from agenthood_mw.auth import AuthMiddleware, require_identity
from agenthood_mw.memory import (
    InMemoryBackend,
    MemoryBackend,
    ScopedMemory,
    SQLiteBackend,
    memory_from_url,
)
from agenthood_mw.metering import (
    Budget,
    BudgetExhausted,
    CostEstimator,
    CostMeterMiddleware,
    Meter,
    Metering,
    PriceTable,
    ThinkingBudget,
    current_meter,
)
from agenthood_mw.ratelimit import RateLimitDecision, RateLimiter, RateLimitMiddleware

__all__ = [
    "Agent",
    "AgenthoodAPI",
    "AuthMiddleware",
    "Budget",
    "BudgetExhausted",
    "CostEstimator",
    "CostMeterMiddleware",
    "Identity",
    "InMemoryBackend",
    "LLMProvider",
    "MemoryBackend",
    "MemoryScope",
    "Meter",
    "Metering",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "PriceTable",
    "ProviderFailover",
    "RateLimitDecision",
    "RateLimitMiddleware",
    "RateLimiter",
    "RunContext",
    "SQLiteBackend",
    "ScopedMemory",
    "ThinkingBudget",
    "__version__",
    "current_identity",
    "current_meter",
    "memory_from_url",
    "require_identity",
]
