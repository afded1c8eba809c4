"""The app the crash test serves: one metered agent route, the ledger from ``CRASH_LEDGER``.

``x-user`` names the caller (stands in for AuthMiddleware); each run records ``calls`` model
calls (query parameter) so every run has usage rows to lose.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agenthood_mw import Identity
from agenthood_mw.metering import CostMeterMiddleware, PriceTable, current_meter

PRICES = PriceTable({"gpt-4o": {"input": "2.50", "output": "10.00"}})


async def run(request: Request) -> PlainTextResponse:
    meter = current_meter()
    for _ in range(int(request.query_params.get("calls", "1"))):
        meter.record(model="gpt-4o", input_tokens=1000, output_tokens=100)
    return PlainTextResponse("ok")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


metered = CostMeterMiddleware(
    Starlette(
        routes=[Route("/agents/{name}/run", run, methods=["POST"]), Route("/health", health)]
    ),
    prices=PRICES,
    ledger=os.environ["CRASH_LEDGER"],
    exempt_paths=["/health"],
    on_alert=None,
)


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        user = dict(scope["headers"]).get(b"x-user")
        if user:
            scope["user"] = Identity(user_id=user.decode())
    await metered(scope, receive, send)
