"""An app that streams the SDK's stream on to its client (``StreamingResponse``): the usage of
the final chunk is charged to the request before its response ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agenthood_mw import CostMeterMiddleware, Identity, MemoryScope
from agenthood_mw.capture.httpx2 import MeteredAsyncTransport
from agenthood_mw.metering import Metering

openai = pytest.importorskip("openai")


async def test_proxied_stream_is_charged_to_its_request(fresh: Provider) -> None:
    client = openai.AsyncOpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
    )

    async def chat(request: Request) -> StreamingResponse:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )

        async def relay() -> AsyncIterator[str]:
            async for chunk in stream:
                if chunk.choices:
                    yield chunk.choices[0].delta.content or ""

        return StreamingResponse(relay(), media_type="text/plain")

    metering = Metering(prices=PRICES)
    inner = CostMeterMiddleware(
        Starlette(routes=[Route("/chat", chat, methods=["POST"])]), metering=metering
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = Identity(user_id="streamer")
        await inner(scope, receive, send)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as http:
        response = await http.post("/chat")
    assert response.text == "x " * 12
    await metering.aflush()
    spent = await metering.ledger.spend(MemoryScope.operator(user="streamer"))
    assert int(spent * 10**9) == expected_nanos("gpt-4o-mini", fresh.hits()) > 0
    await metering.aclose()
