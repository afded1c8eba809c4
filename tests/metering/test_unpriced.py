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
    ("model", "expected"),
    [
        # 1000 x $0.15/M + 100 x $0.60/M
        ("gpt-4o-mini-2024-07-18", Decimal("0.00021")),
        # 1000 x $3/M + 100 x $15/M
        ("claude-3-5-sonnet-20241022", Decimal("0.0045")),
    ],
)
def test_dated_snapshot_is_priced_by_its_alias(model: str, expected: Decimal) -> None:
    meter = Meter(prices=PRICES, scope=SCOPE)
    assert meter.record_response(openai_response(model)) == expected
    assert meter.totals.total_cost == expected


@pytest.mark.parametrize("model", ["gpt-4o-mini-2024", "gpt-4o-mini-x", "gpt-4o"])
def test_only_a_date_suffix_falls_back(model: str) -> None:
    assert model not in PRICES


def test_unknown_model_keeps_the_tokens_then_raises(caplog: pytest.LogCaptureFixture) -> None:
    meter = Meter(prices=PRICES, scope=SCOPE)
    with caplog.at_level(logging.ERROR), pytest.raises(UnknownModelError):
        meter.record(model="mystery-model", input_tokens=500, output_tokens=50)
    assert meter.totals.input_tokens == 500
    assert meter.totals.output_tokens == 50
    assert meter.totals.total_cost == 0
    assert "mystery-model" in caplog.text
    assert "recorded at zero cost" in caplog.text
