"""Usage that was spent is never lost to pricing: dated snapshots and unknown models."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from agenthood_mw import MemoryScope, PriceTable
from agenthood_mw.metering import Meter, UnknownModelError

PRICES = PriceTable(
    {
        "gpt-4o-mini": {"input": "0.15", "output": "0.60"},
        "claude-3-5-sonnet": {"input": "3.00", "output": "15.00"},
    }
)
SCOPE = MemoryScope.operator(user="alice")


def openai_response(model: str) -> dict[str, object]:
    return {
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
    }


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20241022", "gpt-4o-mini-99999999"]
)
def test_dated_snapshot_is_not_priced_by_its_alias(model: str) -> None:
    # Snapshots can cost more than their alias (gpt-4o-2024-05-13 vs gpt-4o): never guess.
    assert model not in PRICES
    meter = Meter(prices=PRICES, scope=SCOPE)
    with pytest.raises(UnknownModelError):
        meter.record_response(openai_response(model))
    assert meter.totals.input_tokens == 1000  # the spent tokens are kept, at zero cost
    assert meter.totals.total_cost == 0


def test_record_response_priced_by_the_requested_model() -> None:
    meter = Meter(prices=PRICES, scope=SCOPE)
    # 1000 x $0.15/M + 100 x $0.60/M
    got = meter.record_response(openai_response("gpt-4o-mini-2024-07-18"), model="gpt-4o-mini")
    assert got == Decimal("0.00021")
    assert meter.totals.total_cost == Decimal("0.00021")


def test_unknown_model_keeps_the_tokens_then_raises(caplog: pytest.LogCaptureFixture) -> None:
    meter = Meter(prices=PRICES, scope=SCOPE)
    with caplog.at_level(logging.ERROR), pytest.raises(UnknownModelError):
        meter.record(model="mystery-model", input_tokens=500, output_tokens=50)
    assert meter.totals.input_tokens == 500
    assert meter.totals.output_tokens == 50
    assert meter.totals.total_cost == 0
    assert "mystery-model" in caplog.text
    assert "recorded at zero cost" in caplog.text
