"""Regression tests of review findings on money: model aliases (1), streamed usage (2), timed-out
sync agents (3) and tasks that cannot be encoded (7). Real HTTP servers on 127.0.0.1 play the
model provider."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from agenthood_mw import MemoryScope
from agenthood_mw._core.pricing import Usage as PricedUsage
from agenthood_mw._core.pricing import nanos_to_decimal
from agenthood_mw.api import (
    AgenthoodAPI,
    Completion,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderError,
    RunContext,
    Usage,
    record_usage,
)
from agenthood_mw.api._offline import estimate_prompt_tokens, estimate_tokens
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.memory import InMemoryBackend, ScopedMemory
from agenthood_mw.metering import (
    BudgetExhausted,
    MemoryLedger,
    MemoryTraceStore,
    Meter,
    PriceTable,
    UnknownModelError,
    reset_meter,
    set_meter,
)

if TYPE_CHECKING:
    from .conftest import LLMServer

SECRET = "money-secret-" + "x" * 40
MESSAGES = [{"role": "user", "content": "hello there"}]
ALICE = MemoryScope.operator(user="alice")
TEST_PRICES = {"test-model": {"input": "2.00", "output": "8.00"}}
OFFLINE_PRICES = {"agenthood-offline-1": {"input": "1000", "output": "1000"}}


def headers(user: str = "alice") -> dict[str, str]:
    return {"authorization": "Bearer " + mint_token(secret=SECRET, user_id=user)}


def make_api(agents: list[Any], **kwargs: Any) -> AgenthoodAPI:
    kwargs.setdefault("memory", InMemoryBackend())
    kwargs.setdefault("ledger", MemoryLedger())
    kwargs.setdefault("traces", MemoryTraceStore())
    api = AgenthoodAPI(agents=agents, **kwargs)
    api.add_middleware(AuthMiddleware, strategy="jwt", secret=SECRET, audience="agenthood-api")
    return api


def client(api: AgenthoodAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api, raise_app_exceptions=False),
        base_url="http://test",
    )


def exact(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return data


def meter(prices: PriceTable | None = None) -> Meter:
    return Meter(prices=prices or PriceTable(TEST_PRICES), scope=ALICE)


class OneCall:
    name = "one-call"
    description = "one model call"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("ask")
        return (await ctx.complete([{"role": "user", "content": task}])).text


# -- finding 1: a model answered under a dated snapshot name ------------------------------------
@pytest.mark.parametrize("unknown", ["error", "zero"])
async def test_snapshot_answer_is_priced_by_the_requested_model(
    llm_server: Callable[[str], LLMServer], unknown: Any
) -> None:
    server = llm_server("primary")
    server.answer_model = "test-model-2024-07-18"
    prices = PriceTable(TEST_PRICES, unknown=unknown)
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    api = make_api([OneCall()], provider=provider, prices=prices)
    expected = nanos_to_decimal(
        prices.cost_nanos("test-model", PricedUsage(31, 9, cached_input_tokens=5))
    )
    assert expected > 0
    async with client(api) as c:
        r = await c.post("/agents/one-call/run", json={"task": "hi"}, headers=headers())
        await api.flush()
        trace = await api.traces.get(ALICE, r.headers["x-agenthood-run-id"])
    assert r.status_code == 200, r.text
    assert exact(r)["cost"]["totalCost"] == expected
    assert await api.ledger.spend(ALICE) == expected
    assert trace is not None
    calls = [e for e in trace["events"] if e["type"] == "model_call"]
    assert [(c["model"], Decimal(c["cost"])) for c in calls] == [
        ("test-model-2024-07-18", expected)
    ]
    await api.aclose()


async def test_answered_model_with_its_own_price_uses_that_price(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    server.answer_model = "test-model-2024-07-18"
    prices = PriceTable({**TEST_PRICES, "test-model-2024-07-18": {"input": "4", "output": "16"}})
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter(prices)
    token = set_meter(m)
    try:
        await provider.complete(MESSAGES)
    finally:
        reset_meter(token)
        await provider.aclose()
    usage = PricedUsage(31, 9, cached_input_tokens=5)
    assert m.totals.cost_nanos == prices.cost_nanos("test-model-2024-07-18", usage)
    assert m.totals.cost_nanos == 2 * prices.cost_nanos("test-model", usage)


async def test_unpriced_model_override_is_refused_before_the_call(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter()
    token = set_meter(m)
    try:
        with pytest.raises(UnknownModelError, match="other-model"):
            await provider.complete(MESSAGES, model="other-model")
        with pytest.raises(UnknownModelError, match="other-model"):
            async for _ in provider.stream(MESSAGES, model="other-model"):
                pass
        with pytest.raises(UnknownModelError, match="other-model"):
            await OfflineProvider().complete(MESSAGES, model="other-model")
    finally:
        reset_meter(token)
        await provider.aclose()
    assert server.hits == 0
    assert m.totals.model_calls == 0


def test_usage_that_cannot_be_priced_is_recorded_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = meter()
    token = set_meter(m)
    try:
        with caplog.at_level(logging.ERROR, logger="agenthood_mw.api"):
            record_usage(Completion("text", Usage(100, 50), "mystery-model", "custom"))
    finally:
        reset_meter(token)
    totals = m.totals
    assert (totals.input_tokens, totals.output_tokens, totals.model_calls) == (100, 50, 1)
    assert totals.cost_nanos == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "mystery-model" in errors[0].getMessage()


# -- finding 2: streamed completions -------------------------------------------------------------
async def test_full_stream_records_the_reported_usage(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter()
    token = set_meter(m)
    try:
        chunks = [chunk async for chunk in provider.stream(MESSAGES)]
    finally:
        reset_meter(token)
        await provider.aclose()
    assert "".join(chunks).strip() == "primary says: hello there"
    totals = m.totals
    assert (totals.input_tokens, totals.output_tokens, totals.model_calls) == (31, 9, 1)


async def test_stream_stopped_early_is_metered_with_an_estimate(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter()
    token = set_meter(m)
    received: list[str] = []
    try:
        stream = provider.stream(MESSAGES)
        async for chunk in stream:
            received.append(chunk)
            break
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        reset_meter(token)
        await provider.aclose()
    totals = m.totals
    assert totals.model_calls == 1
    assert totals.input_tokens == estimate_prompt_tokens(MESSAGES) > 0
    assert totals.output_tokens == estimate_tokens("".join(received)) > 0
    assert totals.cost_nanos > 0


async def test_stream_closed_outside_its_run_is_metered_on_that_run(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter()
    token = set_meter(m)
    stream = provider.stream(MESSAGES)
    try:
        first = await stream.__anext__()
    finally:
        reset_meter(token)
    other = meter()
    other_token = set_meter(other)  # closed while another run's meter is bound
    try:
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        reset_meter(other_token)
        await provider.aclose()
    assert m.totals.output_tokens == estimate_tokens(first) > 0
    assert other.totals.model_calls == 0


async def test_stream_without_usage_is_estimated(
    llm_server: Callable[[str], LLMServer],
) -> None:
    server = llm_server("primary")
    server.stream_usage = False
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter()
    token = set_meter(m)
    try:
        chunks = [chunk async for chunk in provider.stream(MESSAGES)]
    finally:
        reset_meter(token)
        await provider.aclose()
    totals = m.totals
    assert totals.model_calls == 1
    assert totals.input_tokens == estimate_prompt_tokens(MESSAGES)
    assert totals.output_tokens == estimate_tokens("".join(chunks)) > 0


async def test_refused_stream_is_not_charged(llm_server: Callable[[str], LLMServer]) -> None:
    server = llm_server("primary")
    server.mode = 500
    provider = OpenAICompatibleProvider(model="test-model", base_url=server.url, name="primary")
    m = meter()
    token = set_meter(m)
    try:
        with pytest.raises(ProviderError):
            async for _ in provider.stream(MESSAGES):
                pass
    finally:
        reset_meter(token)
        await provider.aclose()
    assert server.hits == 1
    assert m.totals.model_calls == 0


# -- finding 3: a sync agent that outlives run_timeout -------------------------------------------
class SlowSync:
    """Calls the model and writes memory in a loop, slower than the run timeout allows."""

    name = "slow"
    description = "sync agent"

    def __init__(self, *, ignore_stop_for: float = 0.0) -> None:
        self.calls: list[float] = []
        self.writes: list[float] = []
        self.refusal: BaseException | None = None
        self.late_record: BaseException | None = None
        self.ignore_stop_for = ignore_stop_for
        self.done = threading.Event()

    def run(self, task: str, ctx: RunContext) -> str:
        try:
            for i in range(8):
                if i == 1 and self.ignore_stop_for:
                    time.sleep(self.ignore_stop_for)  # deaf to the stop signal for a while
                    try:
                        ctx.meter.record(
                            model="agenthood-offline-1", input_tokens=5, output_tokens=5
                        )
                    except BudgetExhausted as exc:
                        self.late_record = exc
                ctx.call(ctx.complete, [{"role": "user", "content": "x" * 400}])
                self.calls.append(time.monotonic())
                ctx.call(ctx.memory.facts.put, f"k{i}", "v")
                self.writes.append(time.monotonic())
                time.sleep(0.15)
            return "done"
        except BudgetExhausted as exc:
            self.refusal = exc
            raise
        finally:
            self.done.set()


async def test_timed_out_sync_agent_is_stopped_and_every_call_is_billed() -> None:
    agent = SlowSync()
    api = make_api([agent], run_timeout=0.2, provider=OfflineProvider(), prices=OFFLINE_PRICES)
    async with client(api) as c:
        r = await c.post("/agents/slow/run", json={"task": "go"}, headers=headers())
        answered = time.monotonic()
        assert agent.done.is_set()  # the worker finished before the response was sent
        await asyncio.sleep(0.5)
        await api.flush()
        trace = await api.traces.get(ALICE, r.headers["x-agenthood-run-id"])
    assert r.status_code == 200, r.text
    body = exact(r)
    assert body["stopReason"] == "timeout"
    assert isinstance(agent.refusal, BudgetExhausted) and agent.refusal.reason == "timeout"
    assert 1 <= len(agent.calls) < 8
    assert all(t < answered for t in agent.calls + agent.writes)
    assert trace is not None and trace["totals"]["modelCalls"] == len(agent.calls)
    assert await api.ledger.spend(ALICE) == body["cost"]["totalCost"] > 0
    page = await ScopedMemory(api.memory_backend, ALICE).facts.list("k")
    assert len(page.items) == len(agent.writes)
    await api.aclose()


async def test_sync_agent_deaf_to_the_stop_is_left_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = SlowSync(ignore_stop_for=1.5)
    api = make_api(
        [agent],
        run_timeout=0.3,
        stop_grace=0.2,
        provider=OfflineProvider(),
        prices=OFFLINE_PRICES,
    )
    async with client(api) as c:
        started = time.monotonic()
        r = await c.post("/agents/slow/run", json={"task": "go"}, headers=headers())
        elapsed = time.monotonic() - started
        with caplog.at_level(logging.ERROR, logger="agenthood_mw.metering"):
            assert await asyncio.to_thread(agent.done.wait, 5)
        await api.flush()
    assert r.status_code == 200 and exact(r)["stopReason"] == "timeout"
    assert elapsed < 1.2  # bounded by run_timeout + stop_grace, not the agent's 1.5 s
    assert len(agent.calls) == 1
    assert isinstance(agent.late_record, BudgetExhausted)
    assert agent.late_record.reason == "run_finished"
    assert isinstance(agent.refusal, BudgetExhausted) and agent.refusal.reason == "timeout"
    assert any("run_finished" in rec.getMessage() for rec in caplog.records)
    assert await api.ledger.spend(ALICE) == exact(r)["cost"]["totalCost"]
    await api.aclose()


async def test_sync_agent_that_checks_the_stop_flag_answers_with_its_output() -> None:
    class Cooperative:
        name = "coop"
        description = "checks ctx.stop_requested in a CPU loop"

        def run(self, task: str, ctx: RunContext) -> str:
            deadline = time.monotonic() + 5
            while ctx.stop_requested is None and time.monotonic() < deadline:
                time.sleep(0.01)
            return f"stopped early ({ctx.stop_requested})"

    api = make_api([Cooperative()], run_timeout=0.2, provider=OfflineProvider())
    async with client(api) as c:
        started = time.monotonic()
        r = await c.post("/agents/coop/run", json={"task": "go"}, headers=headers())
    assert time.monotonic() - started < 2
    assert r.status_code == 200
    assert (r.json()["output"], r.json()["stopReason"]) == ("stopped early (timeout)", "timeout")
    await api.aclose()


def test_stop_grace_is_validated() -> None:
    with pytest.raises(ValueError, match="stop_grace"):
        AgenthoodAPI(agents=[OneCall()], stop_grace=-1)
    with pytest.raises(TypeError, match="stop_grace"):
        AgenthoodAPI(agents=[OneCall()], stop_grace="1")  # type: ignore[arg-type]


# -- finding 7: a task that cannot be encoded ----------------------------------------------------
@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        (b'{"task": "fix \\ud800 bug"}', "invalid_task"),
        (b'{"task": "\\udfff"}', "invalid_task"),
        (b'{"task": "x", "\\ud800": 1}', "invalid_request"),
        (b'{"task": "x", "budget": {"\\ud800": 1}}', "invalid_budget"),
    ],
)
async def test_unencodable_text_is_a_422_and_nothing_runs(body: bytes, error_type: str) -> None:
    agent = SlowSync()
    api = make_api([agent], provider=OfflineProvider(), prices=OFFLINE_PRICES)
    async with client(api) as c:
        r = await c.post(
            "/agents/slow/run",
            content=body,
            headers={**headers(), "content-type": "application/json"},
        )
        await api.flush()
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == error_type
    assert "x-agenthood-run-id" not in r.headers
    assert agent.calls == [] and not agent.done.is_set()
    assert await api.ledger.spend(ALICE) == 0
    await api.aclose()


async def test_demo_warns_that_a_remote_model_is_metered_at_zero(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agenthood_mw._cli._demo import build_demo_app
    from agenthood_mw._cli._settings import load_settings

    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    env = {
        "AGENTHOOD_PROVIDER_URL": "http://127.0.0.1:9/v1",
        "AGENTHOOD_PROVIDER_MODEL": "gpt-4o-mini",
    }
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.cli"):
        remote = build_demo_app(load_settings(env, data_dir=str(tmp_path)))
        after_remote = len(caplog.records)
        offline = build_demo_app(load_settings({}, data_dir=str(tmp_path)))
    await remote.aclose()
    await offline.aclose()
    warnings = [r.getMessage() for r in caplog.records]
    assert after_remote == 1 and len(warnings) == 1
    assert "'gpt-4o-mini' has no price" in warnings[0]


async def test_run_context_refuses_model_calls_and_writes_once_the_meter_is_finished() -> None:
    from agenthood_mw import Identity
    from agenthood_mw.metering import ThinkingBudget

    budget = ThinkingBudget(max_steps=1)  # the step limit path skips meter.check_budget()
    m = Meter(prices=PriceTable(OFFLINE_PRICES), scope=ALICE, thinking_budget=budget)
    provider = OfflineProvider()
    backend = InMemoryBackend()
    ctx = RunContext(
        identity=Identity(user_id="alice"),
        scope=ALICE,
        memory=ScopedMemory(backend, ALICE),
        meter=m,
        thinking_budget=budget,
        provider=provider,
        run_id=m.run_id,
        agent="x",
    )
    ctx.step("one")
    await ctx.complete(MESSAGES)
    m.finish(status=200)
    with pytest.raises(BudgetExhausted) as info:
        await ctx.complete(MESSAGES)
    assert info.value.reason == "run_finished"
    with pytest.raises(BudgetExhausted):
        await asyncio.to_thread(ctx.call, ctx.memory.facts.put, "late", "v")
    assert provider.calls == 1
    assert await ctx.memory.facts.get("late") is None
    ctx.request_stop("timeout")
    with pytest.raises(BudgetExhausted) as info:
        ctx.step("two")
    assert info.value.reason == "timeout" and ctx.stop_requested == "timeout"
    await backend.close()
