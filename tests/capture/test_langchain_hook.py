"""The LangChain hook: ``ChatOpenAI`` against the fake provider, charged from ``usage_metadata``
(sync, async, streamed), chain / tool starts traced, and a call also seen at the wire charged
once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider

from agenthood_mw import MemoryScope
from agenthood_mw.capture.httpx2 import MeteredTransport
from agenthood_mw.metering import Metering, RunRecord

httpx2 = pytest.importorskip("httpx2")
pytest.importorskip("langchain_core")
langchain_openai = pytest.importorskip("langchain_openai")

from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

from agenthood_mw.capture.langchain import (  # noqa: E402
    MeteringCallbackHandler,
    install,
    installed,
    uninstall,
)

SCOPE = MemoryScope.operator(user="lc")


@pytest.fixture
def metering() -> Iterator[Metering]:
    m = Metering(prices=PRICES)
    yield m
    m.close()


@pytest.fixture
def hooked() -> Iterator[None]:
    install()
    try:
        yield
    finally:
        uninstall()


def _chat(p: Provider, **kw: object) -> object:
    return langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", api_key="k", base_url=p.url + "/v1", max_retries=0, **kw
    )


def _events(record: RunRecord, kind: str) -> list[dict[str, Any]]:
    return [e for e in record.event_dicts() if e.get("type") == kind]


def test_install_charges_an_unchanged_chain(
    fresh: Provider, metering: Metering, hooked: None
) -> None:
    assert installed()
    chain = RunnableLambda(lambda q: [("user", q)]).with_config(run_name="prep") | _chat(
        fresh, max_tokens=7
    )
    with metering.run(SCOPE, agent="bot") as meter:
        chain.invoke("hi")
        chain.invoke("again")
        totals = meter.totals
    hits = fresh.hits("/chat/completions")
    assert len(hits) == 2
    assert totals.model_calls == 2
    assert totals.cost_nanos == expected_nanos("gpt-4o-mini", hits)
    assert totals.cached_input_tokens == sum(h.usage["cached"] for h in hits if h.usage)
    assert totals.reasoning_tokens == sum(h.usage["reasoning"] for h in hits if h.usage) > 0


def test_no_handler_after_uninstall(fresh: Provider, metering: Metering) -> None:
    install()
    uninstall()
    assert not installed()
    with metering.run(SCOPE) as meter:
        _chat(fresh).invoke("hi")
        assert meter.totals.model_calls == 0


async def test_async_and_streamed_with_stream_usage(
    fresh: Provider, metering: Metering, hooked: None
) -> None:
    llm = _chat(fresh, max_tokens=4, stream_usage=True)
    async with metering.arun(SCOPE, agent="bot") as meter:
        await llm.ainvoke("hi")
        parts = [c async for c in llm.astream("hi")]
        totals = meter.totals
    assert len(parts) > 4
    hits = fresh.hits("/chat/completions")
    assert len(hits) == 2 and all(h.usage is not None for h in hits)
    assert totals.model_calls == 2
    assert totals.cost_nanos == expected_nanos("gpt-4o-mini", hits)


def test_sync_stream_and_explicit_handler_twice_charged_once(
    fresh: Provider, metering: Metering
) -> None:
    handler = MeteringCallbackHandler()
    llm = _chat(fresh, max_tokens=3, stream_usage=True)
    with metering.run(SCOPE) as meter:
        list(llm.stream("hi", config={"callbacks": [handler, handler]}))
        totals = meter.totals
    hits = fresh.hits("/chat/completions")
    assert totals.model_calls == 1
    assert totals.cost_nanos == expected_nanos("gpt-4o-mini", hits)


def test_wire_and_hook_together_charge_once(fresh: Provider, metering: Metering) -> None:
    install(charge=False)  # the wire charges; the hook traces
    try:
        client = httpx2.Client(transport=MeteredTransport())
        with metering.run(SCOPE) as meter:
            _chat(fresh, http_client=client).invoke("hi")
            totals = meter.totals
            llm_events = [
                e for e in meter.finish().event_dicts() if e.get("type") == "langchain_llm"
            ]
    finally:
        uninstall()
    hits = fresh.hits("/chat/completions")
    assert len(hits) == 1
    assert totals.model_calls == 1
    assert [e["attrs"] for e in llm_events] == [{"model": "gpt-4o-mini", "charged": False}]
    assert totals.cost_nanos == expected_nanos("gpt-4o-mini", hits)


def test_chain_and_tool_starts_traced(metering: Metering, hooked: None) -> None:
    @tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return city.upper()

    chain = RunnableLambda(lambda x: x).with_config(run_name="prep") | lookup
    with metering.run(SCOPE) as meter:
        assert chain.invoke({"city": "oslo"}) == "OSLO"
        record = meter.finish()
    names = {e["attrs"]["name"] for e in _events(record, "langchain_chain")}
    assert "prep" in names
    tools = [e["attrs"]["name"] for e in _events(record, "langchain_tool")]
    assert tools == ["lookup"]


def test_outside_a_meter_nothing_happens(fresh: Provider, hooked: None) -> None:
    assert _chat(fresh).invoke("hi").content


def test_bad_charge_mode() -> None:
    with pytest.raises(TypeError, match="charge"):
        MeteringCallbackHandler(charge="sometimes")  # type: ignore[arg-type]
