"""Pricing maths against hand-computed values; no float drift; the price-table policies."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest

from agenthood_mw._core.pricing import (
    ModelPrice,
    Usage,
    cost_nanos,
    format_nanos,
    nanos_to_decimal,
    to_nanos,
)
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import Meter, PriceTable, UnknownModelError


def test_hand_computed_cost_with_cached_tokens(prices: PriceTable) -> None:
    # gpt-4o: $2.50 / $10.00 / cached $1.25 per 1M tokens.
    # 1000 input of which 200 cached, 100 output:
    # 800 * 2.5e-6 = 0.002; 200 * 1.25e-6 = 0.00025; 100 * 1e-5 = 0.001 -> 0.00325
    usage = Usage(1000, 100, cached_input_tokens=200)
    assert prices.cost_nanos("gpt-4o", usage) == 3_250_000
    assert nanos_to_decimal(3_250_000) == Decimal("0.00325")


def test_hand_computed_anthropic_cache_write_and_read(prices: PriceTable) -> None:
    # claude-sonnet: in 3.00, out 15.00, cache read 0.30, cache write 3.75 per 1M.
    # 10 000 input = 2 000 plain + 5 000 read + 3 000 written; 500 output.
    # 2000*3e-6=0.006; 5000*3e-7=0.0015; 3000*3.75e-6=0.01125; 500*1.5e-5=0.0075 -> 0.02625
    usage = Usage(10_000, 500, cached_input_tokens=5_000, cache_creation_input_tokens=3_000)
    assert prices.cost_nanos("claude-sonnet", usage) == 26_250_000


def test_reasoning_tokens_priced_as_output_unless_given() -> None:
    table = PriceTable(
        {
            "o": {"input": "1", "output": "4"},
            "r": {"input": "1", "output": "4", "reasoning": "8"},
        }
    )
    usage = Usage(0, 1_000_000, reasoning_tokens=250_000)
    assert table.cost_nanos("o", usage) == 4 * 10**9
    # 750k * 4e-6 + 250k * 8e-6 = 3 + 2
    assert table.cost_nanos("r", usage) == 5 * 10**9


def test_rounding_is_once_per_record_half_even() -> None:
    # $0.0375 per 1M tokens = 37.5 nano-dollars per token: 1 token rounds half-even to 38,
    # 3 tokens = 112.5 -> 112; 2 tokens exactly 75.
    price = ModelPrice.from_amounts(input="0.0375", output="0", per_tokens=1_000_000)
    assert cost_nanos(price, Usage(1, 0)) == 38
    assert cost_nanos(price, Usage(2, 0)) == 75
    assert cost_nanos(price, Usage(3, 0)) == 112


def test_no_float_drift_over_one_million_small_records() -> None:
    price = ModelPrice.from_amounts(input="0.10", output="0.40", per_tokens=1_000_000)
    usage = Usage(1, 0)  # $0.0000001 each
    total = 0
    float_total = 0.0
    for _ in range(1_000_000):
        total += cost_nanos(price, usage)
        float_total += 0.0000001
    assert nanos_to_decimal(total) == Decimal("0.1")
    # The same sum in binary floats drifts: this is what the integer ledger avoids.
    assert float_total != 0.1


def test_meter_totals_are_exact_over_many_records(prices: PriceTable) -> None:
    meter = Meter(prices=prices, scope=MemoryScope.operator(user="u"))
    for _ in range(20_000):
        meter.record(model="tiny", input_tokens=1, output_tokens=1)  # 0.15e-6 + 0.6e-6
    assert meter.totals.total_cost == Decimal("0.015")
    assert meter.totals.input_tokens == 20_000


def test_explicit_cost_overrides_table_and_floats_are_refused(prices: PriceTable) -> None:
    meter = Meter(prices=prices, scope=MemoryScope.operator(user="u"))
    assert meter.record(model="unpriced", input_tokens=5, output_tokens=5, cost="0.0123") == (
        Decimal("0.0123")
    )
    with pytest.raises(TypeError, match="float"):
        meter.record(model="gpt-4o", input_tokens=1, output_tokens=1, cost=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        to_nanos(0.1, option="limit")
    assert format_nanos(1_800_000) == "0.0018"


def test_litellm_json_layout_is_read_exactly(tmp_path: Path) -> None:
    data = {
        "sample_spec": {"input_cost_per_token": "see docs", "max_tokens": "number"},
        "gpt-4o-mini": {
            "input_cost_per_token": 1.5e-07,
            "output_cost_per_token": 6e-07,
            "cache_read_input_token_cost": 7.5e-08,
            "litellm_provider": "openai",
            "mode": "chat",
            "max_tokens": 16384,
        },
        "dall-e-3": {"output_cost_per_image": 0.04, "litellm_provider": "openai"},
        "azure/gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05},
    }
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(data))
    table = PriceTable.from_json(path)
    assert len(table) == 2 and "dall-e-3" not in table
    # 1000 in (400 cached) + 1000 out: 600*0.15e-6 + 400*0.075e-6 + 1000*0.6e-6 = 0.00072
    assert table.cost_nanos("gpt-4o-mini", Usage(1000, 1000, cached_input_tokens=400)) == 720_000
    assert table.price("gpt-4o", provider="azure") == table.price("azure/gpt-4o")
    assert table.price("openai/gpt-4o-mini") == table.price("gpt-4o-mini")


def test_unknown_model_policies(caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(1000, 1000)
    with pytest.raises(UnknownModelError, match="no price for model 'mystery'"):
        PriceTable({}).cost_nanos("mystery", usage)
    zero = PriceTable({}, unknown="zero")
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.metering"):
        assert zero.cost_nanos("mystery", usage) == 0
        assert zero.cost_nanos("mystery", usage) == 0
    assert [r.message for r in caplog.records].count(
        "no price for model 'mystery': metered at zero cost"
    ) == 1
    default = PriceTable({}, unknown="default", default={"input": "1", "output": "2"})
    assert default.cost_nanos("mystery", usage) == 3_000_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prices": {"m": {"input": "1"}}}, "both an input and an output"),
        ({"prices": {"m": {"input": "1", "output": "1", "oops": "1"}}}, "unknown keys"),
        ({"prices": {"m": {"input": "-1", "output": "1"}}}, "negative"),
        ({"prices": {}, "unknown": "maybe"}, "unknown"),
        ({"prices": {}, "unknown": "default"}, "default"),
        ({"prices": {"m": {"input": "abc", "output": "1"}}}, "not a decimal"),
    ],
)
def test_bad_price_tables_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        PriceTable(**kwargs)  # type: ignore[arg-type]


def test_usage_validation() -> None:
    with pytest.raises(ValueError, match="cannot exceed input_tokens"):
        Usage(10, 0, cached_input_tokens=11)
    with pytest.raises(ValueError, match="negative"):
        Usage(-1, 0)
    with pytest.raises(TypeError):
        Usage(1.5, 0)  # type: ignore[arg-type]
