"""Cross-check: our PriceTable against independent calculators on the same cases.

* ``litellm.cost_per_token`` on the very file we load (LiteLLM 1.110.2's bundled price file):
  every case must agree to the nano-dollar (LiteLLM sums binary floats; we allow the half
  nano-dollar of our single rounding plus 10⁻¹² relative for its float error), except the
  cases listed in ``LITELLM_DEVIATIONS``, which must differ (so the list stays true).
* ``genai-prices`` (its own price data): every case agrees exactly, except the cases listed in
  ``GENAI_DEVIATIONS``, where the two sources hold different prices.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agenthood_mw._core.pricing import Usage, nanos_to_decimal
from agenthood_mw.metering import PriceTable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the remote map
litellm = pytest.importorskip("litellm")
genai_prices = pytest.importorskip("genai_prices")

from litellm.types.utils import (  # noqa: E402
    CacheCreationTokenDetails,
    CompletionTokensDetailsWrapper,
    PromptTokensDetailsWrapper,
)
from litellm.types.utils import Usage as LiteUsage  # noqa: E402

PRICE_FILE = Path(litellm.__file__).parent / "model_prices_and_context_window_backup.json"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.from_json(PRICE_FILE)


# (case id, model, Usage, service tier). Chosen to exercise every rule: flat prices, cache
# reads, cache writes (5-minute and 1-hour), reasoning tokens, long-context tiers below, at and
# above the threshold (128k, 200k, 256k, 272k), the tiered_pricing list, service tiers, an
# alias, an embedding, prices with binary-float artefacts, and xAI's inclusive threshold.
LITELLM_CASES: list[tuple[str, str, Usage, str | None]] = [
    ("gpt-4o plain", "gpt-4o", Usage(1234, 567), None),
    ("gpt-4o cached", "gpt-4o", Usage(10_000, 800, cached_input_tokens=4_000), None),
    ("gpt-4o priority", "gpt-4o", Usage(1000, 1000), "priority"),
    ("gpt-4o-mini plain", "gpt-4o-mini", Usage(99_999, 12_345), None),
    ("gpt-4.1 cached", "gpt-4.1", Usage(50_000, 2_000, cached_input_tokens=30_000), None),
    ("gpt-4.1-mini plain", "gpt-4.1-mini", Usage(777, 333), None),
    ("o3 reasoning", "o3", Usage(2_000, 5_000, reasoning_tokens=4_000), None),
    ("o4-mini reasoning", "o4-mini", Usage(2_000, 5_000, reasoning_tokens=4_500), None),
    ("gpt-5 plain", "gpt-5", Usage(1234, 567), None),
    ("gpt-5 flex", "gpt-5", Usage(10_000, 800, cached_input_tokens=4_000), "flex"),
    ("gpt-5 priority", "gpt-5", Usage(10_000, 800, cached_input_tokens=4_000), "priority"),
    ("gpt-5 batch", "gpt-5", Usage(10_000, 800), "batch"),
    ("gpt-5-mini cached", "gpt-5-mini", Usage(8_000, 100, cached_input_tokens=8_000), None),
    ("text-embedding-3-small", "text-embedding-3-small", Usage(5_000, 0), None),
    ("mistral-embed", "mistral/mistral-embed", Usage(4_321, 0), None),
    ("azure text-embedding-3-large", "azure/text-embedding-3-large", Usage(9_999, 0), None),
    ("claude-sonnet-4-5 plain", "claude-sonnet-4-5", Usage(1234, 567), None),
    (
        "claude-sonnet-4-5 read+write",
        "claude-sonnet-4-5",
        Usage(10_000, 500, cached_input_tokens=5_000, cache_creation_input_tokens=3_000),
        None,
    ),
    (
        "claude-sonnet-4-5 1h write",
        "claude-sonnet-4-5",
        Usage(
            10_000,
            500,
            cache_creation_input_tokens=6_000,
            cache_creation_1h_input_tokens=4_000,
        ),
        None,
    ),
    ("claude-haiku-4-5 plain", "claude-haiku-4-5", Usage(3_000, 3_000), None),
    (
        "claude-haiku-4-5 read",
        "claude-haiku-4-5",
        Usage(30_000, 300, cached_input_tokens=29_000),
        None,
    ),
    ("claude-sonnet-latest alias", "claude-sonnet-latest", Usage(1000, 1000), None),
    ("gemini-2.5-pro below", "gemini-2.5-pro", Usage(199_999, 1_000), None),
    ("gemini-2.5-pro at 200k", "gemini-2.5-pro", Usage(200_000, 1_000), None),
    ("gemini-2.5-pro above", "gemini-2.5-pro", Usage(200_001, 1_000), None),
    ("gemini-2.5-pro 250k", "gemini-2.5-pro", Usage(250_000, 1_000), None),
    (
        "gemini-2.5-pro 250k cached",
        "gemini-2.5-pro",
        Usage(250_000, 2_000, cached_input_tokens=100_000),
        None,
    ),
    ("gemini-2.5-pro 250k priority", "gemini-2.5-pro", Usage(250_000, 1_000), "priority"),
    ("gemini-2.5-pro 250k flex", "gemini-2.5-pro", Usage(250_000, 1_000), "flex"),
    ("gemini-2.5-pro priority", "gemini-2.5-pro", Usage(10_000, 1_000), "priority"),
    ("gemini/gemini-2.5-pro 250k", "gemini/gemini-2.5-pro", Usage(250_000, 1_000), None),
    ("gemini-2.5-flash plain", "gemini-2.5-flash", Usage(12_345, 678), None),
    (
        "gemini-2.5-flash cached",
        "gemini-2.5-flash",
        Usage(300_000, 678, cached_input_tokens=100_000),
        None,
    ),
    ("gemma 128k free", "gemini/gemma-3-27b-it", Usage(130_000, 10), None),
    (
        "bedrock sonnet-4-5 above 200k",
        "claude-sonnet-4-5-20250929-v1:0",
        Usage(300_000, 2_000, cached_input_tokens=50_000, cache_creation_input_tokens=20_000),
        None,
    ),
    (
        "bedrock sonnet-4-5 1h above 200k",
        "claude-sonnet-4-5-20250929-v1:0",
        Usage(
            300_000,
            2_000,
            cache_creation_input_tokens=20_000,
            cache_creation_1h_input_tokens=20_000,
        ),
        None,
    ),
    (
        "bedrock sonnet-4-5 at 200k",
        "claude-sonnet-4-5-20250929-v1:0",
        Usage(200_000, 2_000, cached_input_tokens=50_000),
        None,
    ),
    ("azure gpt-5.5 below 272k", "azure_ai/gpt-5.5", Usage(272_000, 1_000), None),
    ("azure gpt-5.5 above 272k", "azure_ai/gpt-5.5", Usage(272_001, 1_000), None),
    (
        "azure gpt-5.5 above 272k cached",
        "azure_ai/gpt-5.5",
        Usage(400_000, 1_000, cached_input_tokens=300_000),
        None,
    ),
    (
        "azure gpt-5.5 above 272k priority",
        "azure_ai/gpt-5.5",
        Usage(400_000, 1_000, cached_input_tokens=300_000),
        "priority",
    ),
    ("azure gpt-5.5 priority", "azure_ai/gpt-5.5", Usage(4_000, 1_000), "priority"),
    ("xai grok-4.3 below", "xai/grok-4.3", Usage(199_999, 1_000), None),
    ("xai grok-4.3 at 200k (inclusive)", "xai/grok-4.3", Usage(200_000, 1_000), None),
    ("xai grok-4.3 above", "xai/grok-4.3", Usage(250_000, 1_000, cached_input_tokens=1), None),
    ("qwen-turbo reasoning", "dashscope/qwen-turbo", Usage(1000, 1000, reasoning_tokens=400), None),
    ("qwen-flash tier 1", "dashscope/qwen-flash", Usage(256_000, 1_000), None),
    ("qwen-flash tier 2", "dashscope/qwen-flash", Usage(256_001, 1_000), None),
    ("qwen-flash no input", "dashscope/qwen-flash", Usage(0, 1_000), None),
    (
        "qwen-plus tiered reasoning",
        "dashscope/qwen-plus-2025-07-28",
        Usage(300_000, 1_000, reasoning_tokens=500),
        None,
    ),
    ("novita float artefact", "novita/deepseek/deepseek-v4-pro", Usage(1_000_003, 7), None),
    (
        "databricks float artefact",
        "databricks/databricks-claude-sonnet-4-1",
        Usage(123_457, 9_876),
        None,
    ),
    (
        "deepseek-chat cached",
        "deepseek/deepseek-chat",
        Usage(5_000, 500, cached_input_tokens=2_000),
        None,
    ),
    ("mistral-large", "mistral/mistral-large-latest", Usage(5_000, 500), None),
    ("groq gpt-oss-120b", "groq/openai/gpt-oss-120b", Usage(5_000, 500), None),
    ("kyma qwen 256k tier", "kyma/qwen-3.6-plus", Usage(256_001, 10), None),
    ("kyma qwen at 256k", "kyma/qwen-3.6-plus", Usage(256_000, 10), None),
    ("vertex gemini-2.5-pro", "vertex_ai/gemini-2.5-pro", Usage(250_000, 1_000), None),
    ("azure gpt-4o", "azure/gpt-4o", Usage(1234, 567), None),
    ("bedrock haiku-4-5", "anthropic.claude-haiku-4-5-20251001-v1:0", Usage(4_000, 400), None),
    (
        "groq gpt-oss-20b cached",
        "groq/openai/gpt-oss-20b",
        Usage(5_000, 500, cached_input_tokens=1_000),
        None,
    ),
    ("zero output", "gpt-4o", Usage(1, 0), None),
    ("zero everything", "gpt-4o", Usage(0, 0), None),
]

#: Cases where LiteLLM's cost_per_token and we differ on purpose, with the reason.
LITELLM_DEVIATIONS: dict[str, str] = {
    "gpt-5 batch": (
        "cost_per_token ignores service_tier='batch' (LiteLLM prices batches in its batch "
        "path); we apply the file's *_batches prices when the call says it ran as a batch"
    ),
    "qwen-flash no input": (
        "with 0 input tokens LiteLLM selects no tiered_pricing tier and bills the entry's flat "
        "keys, which a tiered-only entry lacks ($0); we bill the first tier's output price"
    ),
}


def _litellm_usage(usage: Usage) -> Any:
    details = PromptTokensDetailsWrapper(
        cached_tokens=usage.cached_input_tokens,
        cache_creation_tokens=usage.cache_creation_input_tokens,
        cache_creation_token_details=CacheCreationTokenDetails(
            ephemeral_5m_input_tokens=usage.cache_creation_input_tokens
            - usage.cache_creation_1h_input_tokens,
            ephemeral_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        ),
    )
    return LiteUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
        prompt_tokens_details=details,
        completion_tokens_details=CompletionTokensDetailsWrapper(
            reasoning_tokens=usage.reasoning_tokens
        ),
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_read_input_tokens=usage.cached_input_tokens,
    )


def _litellm_cost(model: str, usage: Usage, tier: str | None) -> Decimal:
    prompt, completion = litellm.cost_per_token(
        model=model, usage_object=_litellm_usage(usage), service_tier=tier
    )
    return Decimal(repr(prompt)) + Decimal(repr(completion))


def _agrees(ours: Decimal, theirs: Decimal) -> bool:
    return abs(ours - theirs) <= Decimal("0.5e-9") + abs(theirs) * Decimal("1e-12")


def test_there_are_at_least_60_litellm_cases() -> None:
    assert len(LITELLM_CASES) >= 60
    assert len({case[0] for case in LITELLM_CASES}) == len(LITELLM_CASES)
    assert set(LITELLM_DEVIATIONS) <= {case[0] for case in LITELLM_CASES}


@pytest.mark.parametrize(
    ("case", "model", "usage", "tier"), LITELLM_CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_litellm_cost_per_token_agrees(
    table: PriceTable, case: str, model: str, usage: Usage, tier: str | None
) -> None:
    priced = Usage(
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.reasoning_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_creation_1h_input_tokens,
        service_tier=tier,
    )
    ours = nanos_to_decimal(table.cost_nanos(model, priced))
    theirs = _litellm_cost(model, usage, tier)
    if case in LITELLM_DEVIATIONS:
        assert not _agrees(ours, theirs), f"{case}: listed as a deviation but agrees"
    else:
        assert _agrees(ours, theirs), f"{case}: ours {ours} != litellm {theirs}"


# (model, genai-prices provider id). The third usage crosses 200k tokens.
GENAI_MODELS: list[tuple[str, str]] = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gpt-4.1", "openai"),
    ("gpt-4.1-mini", "openai"),
    ("o3", "openai"),
    ("o4-mini", "openai"),
    ("gpt-5", "openai"),
    ("gpt-5-mini", "openai"),
    ("claude-sonnet-4-5", "anthropic"),
    ("claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-pro", "google"),
    ("gemini-2.5-flash", "google"),
    ("gemini/gemini-2.5-pro", "google"),
    ("text-embedding-3-small", "openai"),
    ("mistral/mistral-large-latest", "mistral"),
    ("mistral/mistral-embed", "mistral"),
    ("deepseek/deepseek-chat", "deepseek"),
]
GENAI_USAGES: list[Usage] = [
    Usage(1234, 567),
    Usage(10_000, 800, cached_input_tokens=4_000),
    Usage(250_000, 1_000),
]
GENAI_CASES = [(m, p, i) for m, p in GENAI_MODELS for i in range(len(GENAI_USAGES))]

#: (model, usage index) where genai-prices' data differs from LiteLLM's file, with the reason.
GENAI_DEVIATIONS: dict[tuple[str, int], str] = {
    ("claude-sonnet-4-5", 2): (
        "genai-prices carries Anthropic's >200k long-context price for claude-sonnet-4-5; "
        "LiteLLM's first-party entry has none (its Bedrock/Vertex entries do)"
    ),
    **{
        ("mistral/mistral-large-latest", i): "the two sources list different Mistral Large prices"
        for i in range(3)
    },
    **{
        ("mistral/mistral-embed", i): (
            "genai-prices has a different mistral-embed price and also bills output tokens"
        )
        for i in range(3)
    },
    **{
        ("deepseek/deepseek-chat", i): "the two sources list different DeepSeek prices"
        for i in range(3)
    },
}


def test_there_are_at_least_60_cases_in_all() -> None:
    assert len(GENAI_CASES) + len(LITELLM_CASES) >= 110
    assert set(GENAI_DEVIATIONS) <= {(m, i) for m, _, i in GENAI_CASES}


@pytest.mark.parametrize(("model", "provider", "index"), GENAI_CASES)
def test_genai_prices_agrees(table: PriceTable, model: str, provider: str, index: int) -> None:
    usage = GENAI_USAGES[index]
    ours = table.cost_nanos(model, usage)
    result = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cached_input_tokens,
        ),
        model.rsplit("/", 1)[-1],
        provider_id=provider,
    )
    theirs = int((result.total_price * 10**9).to_integral_value())
    if (model, index) in GENAI_DEVIATIONS:
        assert ours != theirs, f"{model}#{index}: listed as a deviation but agrees"
    else:
        assert ours == theirs, f"{model}#{index}: ours {ours} != genai-prices {theirs}"
