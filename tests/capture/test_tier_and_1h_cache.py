"""Service tiers and 1-hour cache writes, read from the wire and priced from the real price
snapshot (``PriceTable.default()``): OpenAI's ``service_tier`` (response body, stream chunks)
and Anthropic's ``usage.cache_creation.ephemeral_1h_input_tokens``."""

from __future__ import annotations

from decimal import Decimal

import httpx2
import pytest
from provider_server import Provider

from agenthood_mw import MemoryScope
from agenthood_mw._core.pricing import Usage
from agenthood_mw.capture.httpx2 import MeteredAsyncTransport, MeteredTransport
from agenthood_mw.metering import Meter, PriceTable, reset_meter, set_meter

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

TABLE = PriceTable.default()
NANOS = Decimal(10**9)


def _meter() -> Meter:
    return Meter(prices=TABLE, scope=MemoryScope.operator(user="u1"))


@pytest.mark.parametrize("stream", [False, True])
def test_openai_priority_tier_is_priced_at_the_tier(fresh: Provider, stream: bool) -> None:
    client = openai.OpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
    )
    meter = _meter()
    token = set_meter(meter)
    try:
        extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        result = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=10,
            service_tier="priority",
            **extra,  # type: ignore[arg-type]
        )
        if stream:
            for _ in result:  # type: ignore[union-attr]
                pass
    finally:
        reset_meter(token)
    # The fake provider reports 110 prompt (30 cached) + 10 completion (5 reasoning) tokens.
    usage = Usage(110, 10, cached_input_tokens=30, reasoning_tokens=5, service_tier="priority")
    standard = Usage(110, 10, cached_input_tokens=30, reasoning_tokens=5)
    priority_nanos = TABLE.cost_nanos("gpt-4o-mini", usage)
    assert priority_nanos > TABLE.cost_nanos("gpt-4o-mini", standard)
    assert meter.totals.total_cost == Decimal(priority_nanos) / NANOS


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_1h_cache_writes_are_priced_at_the_1h_price(
    fresh: Provider, stream: bool
) -> None:
    client = anthropic.AsyncAnthropic(
        api_key="k",
        base_url=fresh.url,
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
    )
    meter = _meter()
    token = set_meter(meter)
    try:
        system = [
            {"type": "text", "text": "rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]
        if stream:
            async with client.messages.stream(
                model="claude-sonnet-4-5",
                max_tokens=7,
                system=system,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": "hi"}],
            ) as s:
                await s.get_final_message()
        else:
            await client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=7,
                system=system,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": "hi"}],
            )
    finally:
        reset_meter(token)
        await client.close()
    # 50 uncached + 20 cache reads + 10 cache writes (all 1-hour) in, 7 out.
    one_hour = Usage(
        80,
        7,
        cached_input_tokens=20,
        cache_creation_input_tokens=10,
        cache_creation_1h_input_tokens=10,
    )
    five_min = Usage(80, 7, cached_input_tokens=20, cache_creation_input_tokens=10)
    nanos = TABLE.cost_nanos("claude-sonnet-4-5", one_hour)
    assert nanos > TABLE.cost_nanos("claude-sonnet-4-5", five_min)
    assert meter.totals.total_cost == Decimal(nanos) / NANOS


def test_record_validates_and_prices_the_new_fields() -> None:
    meter = _meter()
    cost = meter.record(
        model="claude-sonnet-4-5",
        input_tokens=1000,
        output_tokens=0,
        cache_creation_input_tokens=1000,
        cache_creation_1h_input_tokens=1000,
    )
    # claude-sonnet-4-5's 1-hour cache-write price in the snapshot: $6 per million tokens.
    assert cost == Decimal("0.006")
    cost = meter.record(
        model="gpt-4o-mini", input_tokens=1000, output_tokens=0, service_tier="priority"
    )
    assert (
        cost
        == Decimal(TABLE.cost_nanos("gpt-4o-mini", Usage(1000, 0, service_tier="priority"))) / NANOS
    )
    assert cost > Decimal("0.00015")  # the standard input price
    with pytest.raises(ValueError, match="cache_creation_1h_input_tokens"):
        meter.record(
            model="gpt-4o-mini",
            input_tokens=10,
            output_tokens=0,
            cache_creation_input_tokens=1,
            cache_creation_1h_input_tokens=2,
        )
    with pytest.raises(ValueError, match="cache_creation_1h_input_tokens"):
        meter.record(
            model="gpt-4o-mini", input_tokens=10, output_tokens=0, cache_creation_1h_input_tokens=-1
        )
    with pytest.raises(TypeError, match="service_tier"):
        meter.record(model="gpt-4o-mini", input_tokens=1, output_tokens=0, service_tier=1)  # type: ignore[arg-type]
    assert meter.totals.model_calls == 2
