"""The WSGI twin (Flask) and the tokens-per-minute limit (memory and Redis storage)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify
from werkzeug.test import Client

from agenthood_mw import Identity
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import (
    Budget,
    BudgetExhausted,
    CostMeterMiddleware,
    ThinkingBudget,
    WSGICostMeterMiddleware,
    current_meter,
)
from agenthood_mw.ratelimit import RateLimiter


def with_wsgi_identity(app: Any) -> Any:
    def wrapped(environ: Any, start_response: Any) -> Any:
        user = environ.get("HTTP_X_TEST_USER")
        if user:
            environ["agenthood.identity"] = Identity(user_id=user)
        return app(environ, start_response)

    return wrapped


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.post("/agents/<name>/run")
    def run(name: str) -> Any:
        meter = current_meter()
        meter.record(model="gpt-4o", input_tokens=1840, output_tokens=220)
        return jsonify(runId=meter.run_id, cost=meter.totals.as_cost_json())

    @app.get("/stream")
    def stream() -> Response:
        meter = current_meter()

        def body() -> Iterator[str]:
            for i in range(3):
                meter.record(model="tiny", input_tokens=0, output_tokens=1000)
                yield f"chunk {i}\n"

        return Response(body())

    @app.get("/loop")
    def loop() -> Any:
        meter = current_meter()
        try:
            while True:
                meter.check_budget()
                meter.step("again")
        except BudgetExhausted as exc:
            return jsonify(stopReason=exc.reason, steps=meter.totals.steps)

    return app


def test_flask_app_is_metered(prices: Any) -> None:
    mw = WSGICostMeterMiddleware(
        flask_app().wsgi_app,
        prices=prices,
        on_alert=None,
        thinking_budget=ThinkingBudget(max_steps=3),
        budgets=[Budget(limit="0.02", reserve="0.01")],
    )
    client = Client(with_wsgi_identity(mw))
    r = client.post("/agents/the-developer/run", headers={"x-test-user": "f"}, buffered=True)
    assert r.status_code == 200
    assert r.headers["X-Agenthood-Cost"] == "0.0068"
    assert r.headers["X-Agenthood-Run-Id"] == r.get_json()["runId"]
    r = client.get("/stream", headers={"x-test-user": "f"}, buffered=True)
    assert r.get_data() == b"chunk 0\nchunk 1\nchunk 2\n"
    r = client.get("/loop", headers={"x-test-user": "f"}, buffered=True)
    assert r.get_json() == {"stopReason": "budget_exhausted:steps", "steps": 3}
    mw.flush()
    scope = MemoryScope.operator(user="f")
    import asyncio

    # 0.0068 + 3 x 1000 x 0.6e-6 (the streamed body, charged when the server closed it)
    assert asyncio.run(mw.ledger.spend(scope)) == Decimal("0.0086")
    agents = asyncio.run(mw.ledger.report("agent"))
    assert [(a.subject, a.cost) for a in agents] == [("the-developer", Decimal("0.0068"))]
    # 0.0086 spent of 0.02: two more runs fit, then the budget refuses before the app runs.
    statuses = [
        client.post("/agents/x/run", headers={"x-test-user": "f"}, buffered=True).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    mw.close()


def test_wsgi_budget_exhausted_escaping_before_response(prices: Any) -> None:
    def app(environ: Any, start_response: Any) -> Any:
        raise BudgetExhausted("budget_exhausted:tokens")

    mw = WSGICostMeterMiddleware(app, prices=prices, on_alert=None)
    r = Client(mw).get("/")
    assert r.status_code == 422
    assert r.get_json()["error"]["stopReason"] == "budget_exhausted:tokens"


def tokens_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        current_meter().record(model="tiny", input_tokens=400, output_tokens=200)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_tokens_per_minute_memory(prices: Any, with_identity: Any) -> None:
    now = [1000.0]
    limiter = RateLimiter(window="1m", max=1000, clock=lambda: now[0])
    mw = CostMeterMiddleware(tokens_app(), prices=prices, tokens_per_minute=limiter, on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        h = {"x-test-user": "tpm"}
        first = [(await client.get("/", headers=h)).status_code for _ in range(3)]
        r = await client.get("/", headers=h)
        other = await client.get("/", headers={"x-test-user": "someone-else"})
        now[0] += 60
        later = await client.get("/", headers=h)
    # 600 tokens each: the first run fits, the second is admitted with 400 left and fills the
    # bucket; then requests are refused until tokens drain.
    assert first == [200, 200, 429]
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "token_rate_exceeded"
    assert int(r.headers["retry-after"]) >= 1
    assert other.status_code == 200  # per user
    assert later.status_code == 200
    assert await mw.ledger.spend(MemoryScope.operator(user="tpm")) == Decimal(
        "0.00054"
    )  # three admitted runs of 0.00018


async def test_tokens_per_minute_in_redis(
    prices: Any, with_identity: Any, redis_url: str, redis_prefix: str
) -> None:
    limiter = RateLimiter(window="1m", max=1000, storage=redis_url, key_prefix=redis_prefix)
    apps = [
        CostMeterMiddleware(tokens_app(), prices=prices, tokens_per_minute=limiter, on_alert=None)
        for _ in range(2)
    ]  # two "processes" sharing the Redis counters
    statuses = []
    for i in range(4):
        transport = httpx.ASGITransport(app=with_identity(apps[i % 2]))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses.append((await client.get("/", headers={"x-test-user": "r"})).status_code)
    assert statuses == [200, 200, 429, 429]
    await limiter.aclose()


@pytest.mark.parametrize("bad", [0, -5, 1.5, "many"])
def test_tokens_per_minute_validation(prices: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="tokens_per_minute"):
        CostMeterMiddleware(tokens_app(), prices=prices, tokens_per_minute=bad)


async def test_token_rate_fails_open_when_its_storage_is_down(
    prices: Any, with_identity: Any, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(window="1m", max=10, storage="redis://127.0.0.1:1/0")  # nothing there
    mw = CostMeterMiddleware(tokens_app(), prices=prices, tokens_per_minute=limiter, on_alert=None)
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/", headers={"x-test-user": "down"})
    assert r.status_code == 200
    assert "token-rate storage unavailable" in caplog.text
    assert await mw.ledger.spend(MemoryScope.operator(user="down")) == Decimal("0.00018")
