"""Attribution under real concurrency: 160 concurrent requests of 40 users through one ASGI app
(CostMeterMiddleware) that calls the openai and anthropic SDKs through shared metered clients,
from the request's task, ``anyio.to_thread`` and ``asyncio.to_thread`` (an event loop per thread);
the ledger equals, per user and to the nano-dollar, what the fake provider reported."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import anyio.to_thread
import httpx
import httpx2
import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw import CostMeterMiddleware, Identity, MemoryScope, current_meter
from agenthood_mw.capture.httpx2 import MeteredAsyncTransport, MeteredTransport
from agenthood_mw.metering import Metering

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


def _with_identity(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        user = dict(scope.get("headers", ())).get(b"x-test-user")
        if user:
            scope["user"] = Identity(user_id=user.decode(), tenant=None)
        await app(scope, receive, send)

    return middleware


def _app(provider: Provider) -> tuple[ASGIApp, Metering]:
    oai = openai.AsyncOpenAI(
        api_key="k",
        base_url=provider.url + "/v1",
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
    )
    sync_oai = openai.OpenAI(
        api_key="k",
        base_url=provider.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
    )
    ant = anthropic.AsyncAnthropic(
        api_key="k",
        base_url=provider.url,
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
    )

    async def run(request: Request) -> JSONResponse:
        body = await request.json()
        user = request.headers["x-test-user"]
        headers = {"x-user": user}
        n = body["n"]
        if body["kind"] == "chat":
            await oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=n,
                extra_headers=headers,
            )
        elif body["kind"] == "stream":
            stream = await oai.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=n,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            )
            async for _ in stream:
                await asyncio.sleep(0)
        elif body["kind"] == "anyio":
            # The sync SDK from anyio's worker thread (it copies the request's context).
            def sync_call() -> None:
                sync_oai.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=n,
                    extra_headers=headers,
                )

            await anyio.to_thread.run_sync(sync_call)
        else:
            # From a worker thread: the meter follows the request's context.
            def in_thread() -> Any:
                return asyncio.run(_anthropic_call(ant, n, headers))

            await asyncio.to_thread(in_thread)
        return JSONResponse({"cost_nanos": current_meter().totals.cost_nanos})

    metering = Metering(prices=PRICES)
    app = Starlette(routes=[Route("/run", run, methods=["POST"])])
    return _with_identity(CostMeterMiddleware(app, metering=metering)), metering


async def _anthropic_call(client: Any, n: int, headers: dict[str, str]) -> None:
    # A fresh client in the thread's own event loop, same metered transport class.
    fresh = anthropic.AsyncAnthropic(
        api_key="k",
        base_url=str(client.base_url),
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
    )
    async with fresh:
        await fresh.messages.create(
            model="claude-haiku",
            max_tokens=n,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=headers,
        )


async def test_160_concurrent_requests_of_40_users_each_charged_their_own(
    fresh: Provider,
) -> None:
    app, metering = _app(fresh)
    rng = random.Random(12)
    jobs = [
        (f"user{i % 40}", rng.choice(["chat", "stream", "anyio", "anthropic"]), rng.randint(1, 30))
        for i in range(160)
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:

        async def one(user: str, kind: str, n: int) -> int:
            r = await client.post(
                "/run", json={"kind": kind, "n": n}, headers={"x-test-user": user}
            )
            assert r.status_code == 200, r.text
            return int(r.json()["cost_nanos"])

        costs = await asyncio.gather(*(one(*job) for job in jobs))
    assert len(fresh.hits()) == 160
    assert all(c > 0 for c in costs)
    await metering.aflush()
    want: dict[str, int] = defaultdict(int)
    for hit in fresh.hits():
        assert hit.user is not None
        model = "claude-haiku" if hit.path.endswith("/messages") else "gpt-4o-mini"
        want[hit.user] += expected_nanos(model, [hit])
    for user, nanos in want.items():
        spent = await metering.ledger.spend(MemoryScope.operator(user=user))
        assert int(spent * 10**9) == nanos, user
    assert sum(want.values()) == sum(costs)
    await metering.aclose()
