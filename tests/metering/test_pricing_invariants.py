"""Hypothesis: rounding and monotonicity invariants of the pricing core."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw._core.pricing import ModelPrice, Usage, cost_nanos
from agenthood_mw.metering import PriceTable

# Atto-dollars per token: up to $0.001 per token.
rates = st.integers(min_value=0, max_value=10**15)
counts = st.integers(min_value=0, max_value=2_000_000)


@st.composite
def prices(draw: st.DrawFn) -> ModelPrice:
    return ModelPrice(
        draw(rates),
        draw(rates),
        draw(st.none() | rates),
        draw(st.none() | rates),
        draw(st.none() | rates),
        draw(st.none() | rates),
    )


@st.composite
def tiered_prices(draw: st.DrawFn) -> ModelPrice:
    """A price whose long-context tiers never get cheaper (as in every real price file)."""
    base = draw(prices())
    tiers = []
    last = base
    for threshold in sorted(draw(st.sets(st.integers(1, 1_000_000), max_size=3))):
        step = draw(st.integers(0, 10**14))
        last = ModelPrice(
            last.input + step,
            last.output + step,
            None if last.cached_input is None else last.cached_input + step,
            None if last.cache_write is None else last.cache_write + step,
            None if last.reasoning is None else last.reasoning + step,
            None if last.cache_write_1h is None else last.cache_write_1h + step,
        )
        tiers.append((threshold, last))
    return base.with_tiers(tuple(tiers))


# A usage as its disjoint parts: plain input, cache reads, 5-minute and 1-hour cache writes,
# plain output and reasoning output.
parts = st.tuples(counts, counts, counts, counts, counts, counts)


def usage_of(p: tuple[int, int, int, int, int, int]) -> Usage:
    plain, read, w5, w1, out, reasoning = p
    return Usage(
        plain + read + w5 + w1,
        out + reasoning,
        cached_input_tokens=read,
        reasoning_tokens=reasoning,
        cache_creation_input_tokens=w5 + w1,
        cache_creation_1h_input_tokens=w1,
    )


def reference_nanos(price: ModelPrice, p: tuple[int, int, int, int, int, int]) -> int:
    """The same cost computed independently in Decimal dollars, rounded half-even."""
    plain, read, w5, w1, out, reasoning = p
    flat = price.at(plain + read + w5 + w1)
    cread = flat.input if flat.cached_input is None else flat.cached_input
    cwrite = flat.input if flat.cache_write is None else flat.cache_write
    cwrite1h = cwrite if flat.cache_write_1h is None else flat.cache_write_1h
    reason = flat.output if flat.reasoning is None else flat.reasoning
    atto = sum(
        Decimal(n) * Decimal(r)
        for n, r in (
            (plain, flat.input),
            (read, cread),
            (w5, cwrite),
            (w1, cwrite1h),
            (out, flat.output),
            (reasoning, reason),
        )
    )
    return int((atto / Decimal(10**9)).to_integral_value(rounding=ROUND_HALF_EVEN))


@given(tiered_prices(), parts)
def test_cost_equals_an_independent_decimal_computation(
    price: ModelPrice, p: tuple[int, int, int, int, int, int]
) -> None:
    assert cost_nanos(price, usage_of(p)) == reference_nanos(price, p)


@given(tiered_prices(), parts, st.integers(0, 5), st.integers(1, 300_000))
def test_cost_is_monotone_in_each_token_count(
    price: ModelPrice, p: tuple[int, int, int, int, int, int], which: int, extra: int
) -> None:
    more = list(p)
    more[which] += extra
    assert cost_nanos(price, usage_of(p)) <= cost_nanos(price, usage_of(tuple(more)))  # type: ignore[arg-type]


@given(prices(), parts, parts)
def test_splitting_a_usage_moves_the_sum_by_at_most_one_nano_dollar(
    price: ModelPrice,
    a: tuple[int, int, int, int, int, int],
    b: tuple[int, int, int, int, int, int],
) -> None:
    # Each record is rounded once, by at most half a nano-dollar: two records against one
    # differ by at most 1.5, so by at most 1 in whole nano-dollars (flat prices; a long-context
    # tier is chosen per call, so splitting a long prompt legitimately changes its price).
    whole = tuple(x + y for x, y in zip(a, b, strict=True))
    split = cost_nanos(price, usage_of(a)) + cost_nanos(price, usage_of(b))
    assert abs(split - cost_nanos(price, usage_of(whole))) <= 1  # type: ignore[arg-type]


@given(st.decimals(min_value=0, max_value=Decimal("0.01"), places=30, allow_nan=False))
def test_file_prices_round_half_even_to_one_atto_dollar(amount: Decimal) -> None:
    table = PriceTable({"m": {"input_cost_per_token": str(amount), "output_cost_per_token": 0}})
    exact = amount.scaleb(18)
    stored = table.price("m").input
    assert abs(Decimal(stored) - exact) <= Decimal("0.5")
    assert stored == int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
litellm_keys = st.sampled_from(
    [
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
        "input_cost_per_token_above_200k_tokens",
        "output_cost_per_token_priority",
        "input_cost_per_token_above_128k_tokens_batches",
        "tiered_pricing",
        "alias_of",
        "output_cost_per_image",
        "mode",
    ]
)


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.dictionaries(litellm_keys | st.text(max_size=10), json_values, max_size=5).map(
            lambda e: {"litellm_provider": "x", **e}
        ),
        max_size=6,
    )
)
def test_a_litellm_file_never_fails_the_load(data: dict[str, dict[str, object]]) -> None:
    table = PriceTable(data)  # whatever the entries hold: skipped with a reason, never raised
    assert set(table.models()) | set(table.report.skipped) == set(data) - {"sample_spec"}
    for name in table.models():
        price = table.price(name)
        assert price.input >= 0 and price.output >= 0
