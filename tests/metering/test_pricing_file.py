"""LiteLLM's real price file loads whole; tiers, service tiers, cache writes, the snapshot."""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from agenthood_mw._core.pricing import ModelPrice, Usage, cost_nanos, cost_nanos_of
from agenthood_mw.memory import MemoryScope
from agenthood_mw.metering import Meter, PriceTable, UnknownModelError

_spec = importlib.util.find_spec("litellm")  # located, not imported (it is slow to import)
if _spec is None or not _spec.submodule_search_locations:
    pytest.skip("litellm (test extra) is not installed", allow_module_level=True)
PRICE_FILE = (
    Path(_spec.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"
)
TOKEN_KEYS = ("input_cost_per_token", "output_cost_per_token")


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(PRICE_FILE.read_text(), parse_float=str)
    return data


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.from_json(PRICE_FILE)


def test_the_whole_real_file_loads_every_token_priced_entry(
    raw: dict[str, dict[str, object]], table: PriceTable
) -> None:
    assert len(raw) > 4800
    priced = {
        name
        for name, entry in raw.items()
        if name != "sample_spec"
        and (
            any(k in entry for k in TOKEN_KEYS)
            or any(k in tier for tier in entry.get("tiered_pricing", ()) for k in TOKEN_KEYS)  # type: ignore[attr-defined]
        )
    }
    assert len(priced) > 3800
    assert priced - set(table.models()) == set()
    aliases = {name: e["alias_of"] for name, e in raw.items() if "alias_of" in e}
    assert len(aliases) == 98
    for name, target in aliases.items():
        assert table.price(name) is table.price(str(target))
    assert table.report.aliases == 98
    # What was left out had no token price at all.
    for name in table.report.skipped:
        assert name == "sample_spec" or not any(k in raw[name] for k in TOKEN_KEYS)
    assert "fallback_generalizations" in table.report.skipped


def test_claude_sonnet_latest_alias_and_embeddings_are_priced(table: PriceTable) -> None:
    assert table.price("claude-sonnet-latest") == table.price("claude-sonnet-5-5")
    # mistral-embed: input only, $1e-7 per token; output tokens cost nothing.
    assert table.cost_nanos("mistral/mistral-embed", Usage(1000, 0)) == 100_000
    assert table.price("mistral/mistral-embed").output == 0


def test_binary_float_artefacts_round_half_even_to_atto_dollars(table: PriceTable) -> None:
    # "1.6000000000000001e-06" $/token = 1 600 000 000 000.0001 atto -> 1 600 000 000 000.
    assert table.price("novita/deepseek/deepseek-v4-pro").input == 1_600_000_000_000
    # "2.9999900000000002e-06" -> 2 999 990 000 000.0002 -> 2 999 990 000 000.
    assert table.price("databricks/databricks-claude-sonnet-4-1").input == 2_999_990_000_000
    # Half-even at exactly half an atto: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
    t = PriceTable(
        {
            "a": {"input_cost_per_token": "5e-19", "output_cost_per_token": "1.5e-18"},
            "b": {
                "input_cost_per_token": "2.5e-18",
                "output_cost_per_token": "0.0000011428571428571428",
            },
        }
    )
    assert (t.price("a").input, t.price("a").output) == (0, 2)
    assert t.price("b").input == 2
    exact = Decimal("0.0000011428571428571428").scaleb(18)
    assert t.price("b").output == int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
    assert t.report.rounded == 4


def test_short_form_stays_strict_about_sub_atto_prices() -> None:
    with pytest.raises(ValueError, match="finer than"):
        PriceTable({"m": {"input": "0.0000000000001", "output": "1"}})


def test_one_summary_warning_and_never_fatal(caplog: pytest.LogCaptureFixture) -> None:
    data: dict[str, Any] = {
        "sample_spec": {"input_cost_per_token": "see docs", "mode": "one of: chat"},
        "fallback_generalizations": {"rules": [{"name": "x"}]},
        "alias": {"alias_of": "chat"},
        "dangling": {"alias_of": "nowhere"},
        "chat": {
            "input_cost_per_token": 1e-06,
            "output_cost_per_token": 2e-06,
            "supports_vision": True,
            "brand_new_key": {"nested": 1},
            "output_cost_per_image": 0.04,
            "mode": "chat",
        },
        "tts": {"input_cost_per_character": 1.5e-05, "mode": "audio_speech"},
        "broken": {"input_cost_per_token": "n/a", "output_cost_per_token": 1e-06},
    }
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.metering"):
        t = PriceTable(data)
    assert t.models() == ["alias", "chat"]
    assert t.price("alias") is t.price("chat")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "2 models priced (1 aliases)" in warnings[0]
    assert t.report.skipped["tts"] == "no token price (mode audio_speech)"
    assert t.report.skipped["dangling"] == "alias of an unpriced model"
    assert t.report.skipped["broken"].startswith("unreadable price")
    assert t.report.ignored_keys["output_cost_per_image"] == 1
    with pytest.raises(UnknownModelError):
        t.price("tts")


def test_gemini_25_pro_250k_prompt_is_priced_at_the_tier(table: PriceTable) -> None:
    # Base $1.25/$10 per 1M, above 200k $2.50/$15.
    assert table.cost_nanos("gemini-2.5-pro", Usage(250_000, 1_000)) == 640_000_000
    # Exactly at the threshold: the base price. One token more: the tier price for all.
    assert table.cost_nanos("gemini-2.5-pro", Usage(200_000, 1_000)) == 260_000_000
    assert table.cost_nanos("gemini-2.5-pro", Usage(200_001, 1_000)) == 515_002_500
    # Cache reads above the tier: $0.25 per 1M instead of $0.125.
    usage = Usage(250_000, 0, cached_input_tokens=100_000)
    assert table.cost_nanos("gemini-2.5-pro", usage) == 150_000 * 2_500 + 100_000 * 250


def test_service_tiers_select_their_prices_and_fall_back(table: PriceTable) -> None:
    usage = Usage(1000, 1000)

    def with_tier(tier: str | None) -> Usage:
        return Usage(1000, 1000, service_tier=tier)

    assert table.cost_nanos("gpt-4o", usage) == 12_500_000
    assert table.cost_nanos("gpt-4o", with_tier("priority")) == 21_250_000
    assert table.cost_nanos("gpt-5", with_tier("flex")) == 5_625_000
    assert table.cost_nanos("gpt-5", with_tier("batch")) == 5_625_000
    assert table.cost_nanos("gpt-5", with_tier("Priority")) == 22_500_000
    # The keyword overrides the usage's own tier.
    assert table.cost_nanos("gpt-5", with_tier("priority"), service_tier="flex") == 5_625_000
    assert table.cost_nanos("gpt-5", usage, service_tier="priority") == 22_500_000
    # Unknown or standard tier names: the standard price.
    for tier in ("default", "auto", "scale", None):
        assert table.cost_nanos("gpt-5", with_tier(tier)) == 11_250_000
    # A tier the model has no price for: the standard price.
    assert table.cost_nanos("text-embedding-3-small", Usage(1000, 0, service_tier="priority")) == (
        table.cost_nanos("text-embedding-3-small", Usage(1000, 0))
    )
    # Priority above 200k on Gemini uses the priority long-context prices.
    assert table.cost_nanos("gemini-2.5-pro", Usage(250_000, 1_000, service_tier="priority")) == (
        250_000 * 4_500 + 1_000 * 27_000
    )


def test_one_hour_cache_writes() -> None:
    t = PriceTable(
        {
            "c": {"input": "3", "output": "15", "cache_write": "3.75", "cache_write_1h": "6"},
            "d": {"input": "3", "output": "15", "cache_write": "3.75"},
        }
    )
    usage = Usage(
        10_000, 0, cache_creation_input_tokens=6_000, cache_creation_1h_input_tokens=4_000
    )
    # 4000 plain * 3 + 2000 * 3.75 + 4000 * 6 (per 1M) = 0.012 + 0.0075 + 0.024
    assert t.cost_nanos("c", usage) == 43_500_000
    # Without a 1-hour price, 1-hour writes cost the cache-write price.
    assert t.cost_nanos("d", usage) == 12_000_000 + 6_000 * 3_750
    assert cost_nanos_of(t.price("c"), 10_000, 0, 0, 0, 6_000, written_1h=4_000) == 43_500_000
    with pytest.raises(ValueError, match="cache_creation_1h_input_tokens"):
        Usage(10, 0, cache_creation_input_tokens=1, cache_creation_1h_input_tokens=2)


def test_tier_thresholds_are_validated() -> None:
    base = ModelPrice(1, 1)
    with pytest.raises(ValueError, match="ascending"):
        base.with_tiers(((200, base), (100, base)))
    with pytest.raises(ValueError, match="ascending"):
        base.with_tiers(((100, base), (100, base)))


def test_highest_crossed_tier_wins() -> None:
    one = 10**9  # one nano-dollar per token
    price = ModelPrice(one, 0).with_tiers(
        ((10, ModelPrice(2 * one, 0)), (20, ModelPrice(3 * one, 0)))
    )
    assert [cost_nanos(price, Usage(n, 0)) for n in (10, 11, 20, 21)] == [10, 22, 40, 63]


def test_update_overrides_and_adds_prices(table: PriceTable) -> None:
    t = PriceTable.default()
    before = t.cost_nanos("gpt-4o", Usage(1_000_000, 0))
    assert before == 2_500_000_000
    t.update({"gpt-4o": {"input": "2.00", "output": "8.00"}, "my-model": {"alias_of": "gpt-4o"}})
    assert t.cost_nanos("gpt-4o", Usage(1_000_000, 0)) == 2_000_000_000
    assert t.cost_nanos("my-model", Usage(1_000_000, 0)) == 2_000_000_000
    # A fresh default table is unaffected; a bad update changes nothing.
    assert PriceTable.default().cost_nanos("gpt-4o", Usage(1_000_000, 0)) == before
    with pytest.raises(ValueError, match="unknown keys"):
        t.update({"gpt-4o-mini": {"input": "1", "output": "1"}, "x": {"input": "1", "oops": 1}})
    assert t.price("gpt-4o-mini") == table.price("gpt-4o-mini")


def test_default_snapshot_matches_the_file_it_was_cut_from(table: PriceTable) -> None:
    snap = PriceTable.default()
    assert snap.models() == table.models()
    assert (snap.report.loaded, snap.report.aliases) == (3994, 98)
    # The snapshot holds only what the table reads: nothing in it is skipped or ignored.
    gz = resources.files("agenthood_mw.metering").joinpath("data", "litellm_prices.json.gz")
    clean = PriceTable(json.loads(gzip.decompress(gz.read_bytes()), parse_float=str))
    assert clean.report.skipped == {} and not clean.report.ignored_keys
    assert len(clean) == len(snap)
    for name in table.models():
        assert snap.price(name) == table.price(name), name


def test_meter_applies_long_context_tiers(table: PriceTable) -> None:
    meter = Meter(prices=table, scope=MemoryScope.operator(user="u"))
    cost = meter.record(model="gemini-2.5-pro", input_tokens=250_000, output_tokens=1_000)
    assert cost == Decimal("0.64")


def test_import_does_not_load_litellm_or_genai_prices() -> None:
    code = (
        "import sys, agenthood_mw\n"
        "agenthood_mw.PriceTable.default()\n"
        "print(','.join(m for m in ('litellm', 'genai_prices') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
