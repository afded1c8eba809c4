"""Reading usage from OpenAI- and Anthropic-style responses (dicts and SDK-like objects)."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace as NS

import pytest

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import (
    AnthropicStreamUsage,
    Meter,
    PriceTable,
    anthropic_usage,
    openai_usage,
    usage_of,
)


def test_openai_chat_completion_dict() -> None:
    response = {
        "model": "gpt-4o",
        "choices": [{"message": {"content": "hi"}}],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "total_tokens": 1300,
            "prompt_tokens_details": {"cached_tokens": 200},
            "completion_tokens_details": {"reasoning_tokens": 100},
        },
    }
    found = openai_usage(response)
    assert found is not None and found.model == "gpt-4o"
    u = found.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == (
        1000,
        300,
        200,
        100,
    )


def test_openai_sdk_object_and_responses_api() -> None:
    chat = NS(
        model="gpt-4o",
        usage=NS(
            prompt_tokens=10, completion_tokens=5, prompt_tokens_details=None,
            completion_tokens_details=None,
        ),
    )  # fmt: skip
    found = openai_usage(chat)
    assert found is not None and found.usage.input_tokens == 10
    responses = {
        "model": "gpt-4o",
        "usage": {
            "input_tokens": 50,
            "output_tokens": 7,
            "input_tokens_details": {"cached_tokens": 10},
            "output_tokens_details": {"reasoning_tokens": 3},
        },
    }
    found = usage_of(responses)
    assert found is not None
    assert (found.usage.input_tokens, found.usage.cached_input_tokens) == (50, 10)


def test_openai_stream_only_final_chunk_has_usage() -> None:
    chunks = [
        {"model": "gpt-4o", "choices": [{"delta": {"content": "a"}}], "usage": None},
        {"model": "gpt-4o", "choices": [{"delta": {"content": "b"}}]},
        {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}},
    ]
    found = [usage_of(c) for c in chunks]
    assert found[0] is None and found[1] is None
    assert found[2] is not None and found[2].usage.output_tokens == 2


def test_anthropic_message_adds_cache_into_input() -> None:
    message = {
        "type": "message",
        "model": "claude-sonnet",
        "usage": {
            "input_tokens": 2000,
            "output_tokens": 500,
            "cache_read_input_tokens": 5000,
            "cache_creation_input_tokens": 3000,
        },
    }
    found = usage_of(message)
    assert found is not None and found.provider == "anthropic"
    u = found.usage
    assert (u.input_tokens, u.cached_input_tokens, u.cache_creation_input_tokens) == (
        10_000,
        5_000,
        3_000,
    )
    assert anthropic_usage({"content": []}) is None


def test_anthropic_stream_accumulates() -> None:
    acc = AnthropicStreamUsage()
    assert acc.result is None
    events = [
        NS(type="message_start", message=NS(model="claude-sonnet", usage=NS(
            input_tokens=100, output_tokens=1, cache_read_input_tokens=0,
            cache_creation_input_tokens=0))),
        NS(type="content_block_delta", delta=NS(text="x")),
        NS(type="message_delta", usage=NS(output_tokens=40)),
        NS(type="message_delta", usage=NS(output_tokens=75)),
        NS(type="message_stop"),
    ]  # fmt: skip
    for event in events:
        acc.feed(event)
    assert acc.result is not None
    assert (acc.result.usage.input_tokens, acc.result.usage.output_tokens) == (100, 75)


def test_meter_record_response(prices: PriceTable) -> None:
    meter = Meter(prices=prices, scope=MemoryScope.operator(user="u"))
    message = {
        "type": "message",
        "model": "claude-sonnet",
        "usage": {
            "input_tokens": 2000,
            "output_tokens": 500,
            "cache_read_input_tokens": 5000,
            "cache_creation_input_tokens": 3000,
        },
    }
    assert meter.record_response(message) == Decimal("0.02625")
    with pytest.raises(ValueError, match="no usage"):
        meter.record_response({"model": "gpt-4o"})
    with pytest.raises(TypeError):
        openai_usage({"usage": {"prompt_tokens": "12", "completion_tokens": 1}})
