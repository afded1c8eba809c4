"""Validation of ``AgenthoodAPI`` options (construction-time, naming the option)."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from agenthood_mw.api._agent import Agent
from agenthood_mw.api._provider import LLMProvider
from agenthood_mw.memory import MemoryBackend, memory_from_url
from agenthood_mw.metering import PriceTable, ThinkingBudget, UnknownModelError

__all__ = [
    "MAX_HEALTH_CACHE",
    "check_agents",
    "check_health_cache",
    "check_meter_options",
    "check_positive",
    "check_prices",
    "memory_backend",
]

_AGENT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MEMORY_KEYS: Final = frozenset({"isolation", "backend"})
_RESERVED_METER_OPTIONS: Final = frozenset(
    {"prices", "ledger", "traces", "agent", "agents", "thinking_budget", "thinking_budgets"}
)


def check_agents(agents: object) -> dict[str, Agent]:
    if isinstance(agents, str | bytes) or not isinstance(agents, Sequence):
        raise TypeError("agents: expected a list of Agent objects")
    if not agents:
        raise ValueError("agents: at least one agent is required")
    table: dict[str, Agent] = {}
    for i, agent in enumerate(agents):
        name = getattr(agent, "name", None)
        if not isinstance(name, str) or not _AGENT_NAME.fullmatch(name):
            raise ValueError(
                f"agents[{i}].name: {name!r} is not a valid agent name "
                "(lowercase letters, digits, '.', '_', '-'; at most 64)"
            )
        if not isinstance(getattr(agent, "description", None), str):
            raise TypeError(f"agents[{i}].description: must be a str")
        if not callable(getattr(agent, "run", None)):
            raise TypeError(f"agents[{i}].run: must be a method run(task, ctx)")
        budget = getattr(agent, "budget", None)
        if budget is not None and not isinstance(budget, ThinkingBudget):
            raise TypeError(f"agents[{i}].budget: must be a ThinkingBudget or None")
        if name in table:
            raise ValueError(f"agents: duplicate agent name {name!r}")
        table[name] = agent
    return table


def memory_backend(memory: object) -> MemoryBackend:
    if isinstance(memory, MemoryBackend):
        return memory
    if isinstance(memory, str):
        return _from_url(memory, "memory")
    if not isinstance(memory, Mapping):
        raise TypeError(
            "memory: expected {'isolation': 'per-user', 'backend': URL or MemoryBackend}, a URL "
            "or a MemoryBackend"
        )
    unknown = sorted(set(memory) - _MEMORY_KEYS)
    if unknown:
        raise ValueError(f"memory: unknown keys {unknown}; allowed: isolation, backend")
    isolation = memory.get("isolation", "per-user")
    if isolation != "per-user":
        raise ValueError(
            f"memory['isolation']: only 'per-user' is supported (got {isolation!r}); memory "
            "is always scoped to the authenticated (tenant, user)"
        )
    backend = memory.get("backend", "memory://")
    if isinstance(backend, MemoryBackend):
        return backend
    if not isinstance(backend, str):
        raise TypeError("memory['backend']: expected a URL such as 'sqlite:///agenthood.db'")
    return _from_url(backend, "memory['backend']")


def _from_url(url: str, option: str) -> MemoryBackend:
    try:
        return memory_from_url(url)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{option}: {exc}") from None


def check_meter_options(options: Mapping[str, object], accepted: Collection[str]) -> None:
    """Refuse a key the built-in ``CostMeterMiddleware`` does not take (or that we set)."""
    reserved = sorted(set(options) & _RESERVED_METER_OPTIONS)
    if reserved:
        raise ValueError(
            f"meter_options: {reserved} are set by AgenthoodAPI's own options "
            "(prices, ledger, traces, thinking_budget, agent budgets)"
        )
    unknown = sorted(k for k in options if k not in accepted or k in ("self", "app"))
    if unknown:
        raise ValueError(
            f"meter_options: unknown option {unknown[0]!r}; CostMeterMiddleware accepts "
            f"{sorted(set(accepted) - _RESERVED_METER_OPTIONS - {'self', 'app'})}"
        )


def check_positive(value: object, option: str, *, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{option}: expected a positive {'int' if integer else 'number'}")
    if integer and not isinstance(value, int):
        raise TypeError(f"{option}: expected a positive int")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{option}: must be positive")


#: Longest ``health_cache`` accepted (seconds): a probe must still notice a store going down.
MAX_HEALTH_CACHE: Final = 300


def check_health_cache(value: object) -> float:
    """``health_cache``: seconds (0 to :data:`MAX_HEALTH_CACHE`) a health result is reused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("health_cache: expected a number of seconds (0 turns the cache off)")
    if isinstance(value, int) and not 0 <= value <= MAX_HEALTH_CACHE:  # no float(10**400)
        raise ValueError(f"health_cache: must be between 0 and {MAX_HEALTH_CACHE} seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_HEALTH_CACHE:
        raise ValueError(f"health_cache: must be between 0 and {MAX_HEALTH_CACHE} seconds")
    return seconds


def check_prices(provider: LLMProvider, prices: PriceTable) -> None:
    """Every provider model must have a price unless the table prices unknown models."""
    if prices.unknown != "error":
        return
    chain = getattr(provider, "providers", None) or (provider,)
    for member in chain:
        model = getattr(member, "model", None)
        if not isinstance(model, str):
            continue
        try:
            prices.price(model, member.name)
        except UnknownModelError:
            raise ValueError(
                f"prices: no price for model {model!r} of provider {member.name!r}; add it to "
                "the PriceTable or use PriceTable(..., unknown='zero')"
            ) from None
