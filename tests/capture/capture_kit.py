"""Shared helpers of the capture tests (prices, a bound meter, the expected cost)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from provider_server import Hit

from agenthood_mw import MemoryScope
from agenthood_mw._core.pricing import Usage
from agenthood_mw.metering import Meter, PriceTable, reset_meter, set_meter

PRICES = PriceTable(
    {
        "gpt-4o-mini": {"input": "0.15", "output": "0.60", "cached_input": "0.075"},
        "text-embedding-3-small": {"input": "0.02", "output": "0"},
        "claude-haiku": {
            "input": "0.80",
            "output": "4.00",
            "cached_input": "0.08",
            "cache_write": "1.00",
        },
    }
)


@contextmanager
def bound_meter(user: str = "u1", **kwargs: Any) -> Iterator[Meter]:
    meter = Meter(prices=PRICES, scope=MemoryScope.operator(user=user), **kwargs)
    token = set_meter(meter)
    try:
        yield meter
    finally:
        reset_meter(token)


def expected_nanos(model: str, hits: list[Hit]) -> int:
    """What the server's reported usage costs (the test's independent sum)."""
    total = 0
    for hit in hits:
        if hit.usage is None:
            continue
        u = hit.usage
        usage = Usage(
            u["input"],
            u["output"],
            cached_input_tokens=u["cached"],
            reasoning_tokens=u["reasoning"],
            cache_creation_input_tokens=u["write"],
        )
        total += PRICES.cost_nanos(model, usage)
    return total
