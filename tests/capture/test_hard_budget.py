"""A hard ``Budget`` of ``CostMeterMiddleware`` stops a looping SDK agent at the call: the
escaping ``BudgetExhausted`` becomes the middleware's 429 ``budget_exceeded`` and the provider
never saw the refused call."""

from __future__ import annotations

from decimal import Decimal

import httpx
import httpx2
import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw import Budget, CostMeterMiddleware, Identity, MemoryScope
from agenthood_mw.capture.httpx2 import MeteredAsyncTransport
from agenthood_mw.metering import Metering

openai = pytest.importorskip("openai")


class _Looper:
    """Stands in for AuthMiddleware: every caller is the user ``looper``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = Identity(user_id="looper")
        await self.app(scope, receive, send)


async def test_hard_budget_stops_the_loop_before_the_call_that_would_exceed(
    fresh: Provider,
) -> None:
    client = openai.AsyncOpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
        max_retries=3,
    )
    calls: list[int] = []

    async def agent(request: Request) -> JSONResponse:
        while True:  # an agent loop that never stops by itself
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}], max_tokens=10
            )
            calls.append(1)

    # One call costs 80 x 0.15 + 30 x 0.075 + 10 x 0.60 = 20.25 micro-dollars.
    metering = Metering(
        prices=PRICES, budgets=[Budget(per="user", limit=Decimal("0.0001"), window="1d")]
    )
    # Inside Starlette's ServerErrorMiddleware (add_middleware), so that the escaping
    # BudgetExhausted is answered by the meter, not turned into a 500 (docs/cost-metering.md).
    app = Starlette(
        routes=[Route("/run", agent, methods=["POST"])],
        middleware=[
            Middleware(_Looper),
            Middleware(CostMeterMiddleware, metering=metering),
        ],
    )

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        response = await http.post("/run")
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "budget_exceeded"
    hits = fresh.hits()
    # The refused call never reached the provider (nor did an SDK retry of it).
    assert len(hits) == len(calls) >= 5
    await metering.aflush()
    spent = await metering.ledger.spend(MemoryScope.operator(user="looper"))
    assert int(spent * 10**9) == expected_nanos("gpt-4o-mini", hits)
    # Stopped only once the budget was spent; the overshoot is the engine's reservation step
    # (a share of the limit, not yet sized from the request: see docs/capture.md).
    assert spent >= Decimal("0.0001")
    assert spent - Decimal("0.0001") < Decimal("0.0001")
    await metering.aclose()
