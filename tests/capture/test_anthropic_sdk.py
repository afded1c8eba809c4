"""The official ``anthropic`` SDK (sync and async, JSON and SSE) through metered transports:
Anthropic's cache counts are converted (its ``input_tokens`` excludes cache reads and writes).

anthropic 2.x accepts only ``httpx2`` clients (``TypeError`` for an ``httpx.Client``); the httpx
transports are covered by the openai tests (openai 3.x takes either)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from capture_kit import bound_meter, expected_nanos
from provider_server import Provider

anthropic = pytest.importorskip("anthropic")

MODEL = "claude-haiku"
MSG = [{"role": "user", "content": "hi"}]


def _client(provider: Provider, stack: str, asynchronous: bool, **kw: Any) -> Any:
    http = importlib.import_module(stack)
    capture = importlib.import_module(f"agenthood_mw.capture.{stack}")
    if asynchronous:
        return anthropic.AsyncAnthropic(
            api_key="k",
            base_url=provider.url,
            http_client=http.AsyncClient(transport=capture.MeteredAsyncTransport()),
            **kw,
        )
    return anthropic.Anthropic(
        api_key="k",
        base_url=provider.url,
        http_client=http.Client(transport=capture.MeteredTransport()),
        **kw,
    )


@pytest.mark.parametrize("stack", ["httpx2"])  # anthropic 2.x refuses httpx clients
def test_sync_messages_json_and_stream(fresh: Provider, stack: str) -> None:
    client = _client(fresh, stack, asynchronous=False)
    with bound_meter() as meter:
        client.messages.create(model=MODEL, max_tokens=7, messages=MSG)
        with client.messages.stream(model=MODEL, max_tokens=9, messages=MSG) as stream:
            text = "".join(stream.text_stream)
    assert text == "x " * 9
    t = meter.totals
    assert t.model_calls == 2
    assert t.input_tokens == 2 * (50 + 20 + 10)  # base + cache reads + cache writes
    assert t.cached_input_tokens == 40
    assert t.output_tokens == 16
    assert t.cost_nanos == expected_nanos(MODEL, fresh.hits()) > 0


@pytest.mark.parametrize("stack", ["httpx2"])  # anthropic 2.x refuses httpx clients
async def test_async_messages_json_and_stream(fresh: Provider, stack: str) -> None:
    client = _client(fresh, stack, asynchronous=True)
    with bound_meter() as meter:
        await client.messages.create(model=MODEL, max_tokens=3, messages=MSG)
        stream = await client.messages.create(model=MODEL, max_tokens=5, messages=MSG, stream=True)
        async for _ in stream:
            pass
    assert meter.totals.output_tokens == 8
    assert meter.totals.cost_nanos == expected_nanos(MODEL, fresh.hits())


def test_cut_stream_keeps_exact_input_and_counts_deltas(fresh: Provider) -> None:
    client = _client(fresh, "httpx2", asynchronous=False, max_retries=0)
    with bound_meter() as meter:
        stream = client.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=MSG,
            stream=True,
            extra_headers={"x-fake": "cut"},
        )
        with pytest.raises(anthropic.APIError):
            for _ in stream:
                pass
    t = meter.totals
    # 15 events (start, block start, 10 deltas, stop, delta, stop); cut after 7: 5 deltas.
    assert (t.input_tokens, t.cached_input_tokens, t.output_tokens) == (80, 20, 5)
