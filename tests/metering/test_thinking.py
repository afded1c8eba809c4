"""ThinkingBudget: per-agent limits, lowered (never raised) per request, stops loops cleanly."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import (
    BudgetExhausted,
    CostMeterMiddleware,
    Meter,
    PriceTable,
    ThinkingBudget,
    current_meter,
)


def test_lowered_by_is_elementwise_min() -> None:
    base = ThinkingBudget(max_steps=20, max_tokens=10_000, max_cost="1.00")
    lowered = base.lowered_by(ThinkingBudget(max_steps=50, max_tokens=500, max_seconds=30))
    assert lowered == ThinkingBudget(
        max_steps=20, max_tokens=500, max_cost=Decimal("1.00"), max_seconds=30
    )
    assert base.lowered_by(None) is base


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_steps": -1}, ValueError),
        ({"max_steps": 1.5}, TypeError),
        ({"max_cost": 0.5}, TypeError),
        ({"max_seconds": "soon"}, ValueError),
    ],
)
def test_bad_thinking_budgets(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ThinkingBudget(**kwargs)


def _meter(prices: PriceTable, **kwargs: Any) -> Meter:
    return Meter(prices=prices, scope=MemoryScope.operator(user="u"), **kwargs)


def _loop_forever(meter: Meter, *, tokens: int = 0) -> int:
    """An agent that never decides it is done; returns the steps it managed."""
    for i in range(10_000):
        meter.check_budget()
        meter.step("think", i=i)
        if tokens:
            meter.record(model="gpt-4o", input_tokens=tokens, output_tokens=tokens)
    raise AssertionError("the budget never stopped the loop")


def test_step_limit_stops_looping_agent_with_reason(prices: PriceTable) -> None:
    meter = _meter(prices, thinking_budget=ThinkingBudget(max_steps=7))
    with pytest.raises(BudgetExhausted) as info:
        _loop_forever(meter)
    assert info.value.reason == "budget_exhausted:steps"
    assert meter.totals.steps == 7
    assert meter.stop_reason == "budget_exhausted:steps"
    assert meter.finish().events[-1]["type"] == "stop"


def test_token_and_cost_limits(prices: PriceTable) -> None:
    meter = _meter(prices, thinking_budget=ThinkingBudget(max_tokens=1000))
    with pytest.raises(BudgetExhausted, match="budget_exhausted:tokens"):
        _loop_forever(meter, tokens=100)
    assert meter.totals.total_tokens == 1000  # 5 steps of 200 tokens
    meter = _meter(prices, thinking_budget=ThinkingBudget(max_cost="0.01"))
    with pytest.raises(BudgetExhausted, match="budget_exhausted:cost"):
        _loop_forever(meter, tokens=100)  # 0.00125 per step -> 8 steps
    assert meter.totals.steps == 8
    assert meter.totals.total_cost == Decimal("0.01")


def test_seconds_limit_uses_the_monotonic_clock(prices: PriceTable) -> None:
    now = [0.0]
    meter = _meter(prices, thinking_budget=ThinkingBudget(max_seconds=5), monotonic=lambda: now[0])
    meter.check_budget()
    now[0] = 4.9
    meter.check_budget()
    now[0] = 5.0
    with pytest.raises(BudgetExhausted, match="budget_exhausted:seconds"):
        meter.check_budget()


def test_per_agent_budget_and_request_can_only_lower(prices: PriceTable) -> None:
    meter = _meter(
        prices,
        thinking_budget=ThinkingBudget(max_steps=100),
        agent_budgets={"reviewer": ThinkingBudget(max_steps=3)},
    )
    meter.set_agent("reviewer")
    assert meter.thinking_budget == ThinkingBudget(max_steps=3)
    meter.thinking_budget = ThinkingBudget(max_steps=50)  # an attempt to raise
    assert meter.thinking_budget is not None and meter.thinking_budget.max_steps == 3
    meter.thinking_budget = ThinkingBudget(max_steps=2)
    with pytest.raises(BudgetExhausted, match="steps"):
        _loop_forever(meter)
    assert meter.totals.steps == 2


async def looping_agent(request: Request) -> JSONResponse:
    meter = current_meter()
    body = await request.json()
    if "maxSteps" in body:
        meter.thinking_budget = ThinkingBudget(max_steps=body["maxSteps"])
    output: list[str] = []
    stop = None
    try:
        while True:
            meter.check_budget()
            meter.step("think")
            meter.record(model="tiny", input_tokens=10, output_tokens=10)
            output.append(f"thought {len(output) + 1}")
    except BudgetExhausted as exc:
        stop = exc.reason
    return JSONResponse({"output": output, "stopReason": stop, "steps": meter.totals.steps})


async def careless_agent(scope: Any, receive: Any, send: Any) -> None:
    """A raw ASGI agent that lets BudgetExhausted escape before responding."""
    if scope["type"] != "http":
        return
    meter = current_meter()
    while True:
        meter.check_budget()
        meter.step("think")


async def test_middleware_applies_per_agent_budget(prices: PriceTable, with_identity: Any) -> None:
    starlette_app = Starlette(routes=[Route("/agents/{name}/run", looping_agent, methods=["POST"])])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        target = careless_agent if scope.get("path") == "/careless/run" else starlette_app
        await target(scope, receive, send)

    mw = CostMeterMiddleware(
        app,
        prices=prices,
        thinking_budget=ThinkingBudget(max_steps=10),
        thinking_budgets={"the-developer": ThinkingBudget(max_steps=4)},
        on_alert=None,
    )
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        h = {"x-test-user": "u1"}
        r = await client.post("/agents/the-developer/run", json={}, headers=h)
        assert r.status_code == 200
        assert r.json() == {
            "output": ["thought 1", "thought 2", "thought 3", "thought 4"],
            "stopReason": "budget_exhausted:steps",
            "steps": 4,
        }
        r = await client.post("/agents/other/run", json={}, headers=h)
        assert r.json()["steps"] == 10
        r = await client.post("/agents/other/run", json={"maxSteps": 99}, headers=h)
        assert r.json()["steps"] == 10  # a request cannot raise the agent's limit
        r = await client.post("/agents/other/run", json={"maxSteps": 2}, headers=h)
        assert r.json()["steps"] == 2
        # An app that lets BudgetExhausted escape before responding gets a clean JSON error,
        # not a 500 (Starlette apps: install with add_middleware, inside ServerErrorMiddleware).
        r = await client.post("/careless/run", headers=h)
        assert r.status_code == 422
        assert r.json()["error"] == {
            "type": "budget_exhausted",
            "message": "the run stopped: its thinking budget is exhausted",
            "stopReason": "budget_exhausted:steps",
        }
        run_id = r.headers.get("x-agenthood-run-id")
    scope = MemoryScope.operator(user="u1")
    traces = await mw.traces.list(scope)
    assert {t["stopReason"] for t in traces} == {"budget_exhausted:steps"}
    assert run_id is None  # headers of the error response come from the middleware itself
    assert json.dumps(traces)
