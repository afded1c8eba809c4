"""``instrument()`` / ``uninstrument()``: the SDKs' default clients metered, then restored
exactly; nothing imported that was not asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest
from capture_kit import bound_meter, expected_nanos
from provider_server import Provider

from agenthood_mw.capture import instrument, instrumented, uninstrument

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

MSG = [{"role": "user", "content": "hi"}]


def _inits() -> list[object]:
    import anthropic._base_client as ab
    import openai._base_client as ob

    return [
        cls.__dict__["__init__"]
        for base in (ob, ab)
        for cls in (base._DefaultHttpxClient, base._DefaultAsyncHttpxClient)
    ]


async def test_instrument_meters_default_clients_and_uninstrument_restores(
    fresh: Provider,
) -> None:
    before = _inits()
    assert instrument() == ["openai", "anthropic"]
    try:
        assert instrument(["openai"]) == ["openai"]  # twice: no change
        assert instrumented() == ["anthropic", "openai"]
        sync = openai.OpenAI(api_key="k", base_url=fresh.url + "/v1")
        aclient = anthropic.AsyncAnthropic(api_key="k", base_url=fresh.url)
        with bound_meter() as meter:
            sync.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=4)
            first = meter.totals.cost_nanos
            await aclient.messages.create(model="claude-haiku", max_tokens=6, messages=MSG)
        hits = fresh.hits()
        assert first == expected_nanos("gpt-4o-mini", hits[:1]) > 0
        assert meter.totals.cost_nanos - first == expected_nanos("claude-haiku", hits[1:]) > 0
    finally:
        uninstrument()
    assert _inits() == before
    assert instrumented() == []
    plain = openai.OpenAI(api_key="k", base_url=fresh.url + "/v1")
    with bound_meter() as meter:
        plain.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=4)
    assert meter.totals.model_calls == 0
    assert type(plain._client._transport).__name__ == "HTTPTransport"


def test_instrument_rejects_an_unknown_sdk() -> None:
    with pytest.raises(ValueError, match="instrument\\(sdks=\\)"):
        instrument(["litellm"])
    assert instrumented() == []


def test_imports_only_what_is_asked() -> None:
    code = (
        "import sys, agenthood_mw, agenthood_mw.capture\n"
        "assert not {'openai', 'anthropic', 'httpx2', 'httpx'} & set(sys.modules), sorted("
        "m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic', 'httpx', 'httpx2'))\n"
        "from agenthood_mw.capture import instrument\n"
        "instrument(['openai'])\n"
        "assert 'openai' in sys.modules and 'anthropic' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
