"""A separate worker process for the cross-process exactness test (run as a script).

argv: redis_url key_prefix start_at(epoch seconds) requests
Prints the number of admitted requests.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agenthood_mw import Identity
from agenthood_mw.ratelimit import RateLimitMiddleware


async def index(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def main(url: str, prefix: str, start_at: float, n: int) -> int:
    inner = RateLimitMiddleware(
        Starlette(routes=[Route("/", index)]),
        window="1m",
        max=20,
        burst=5,
        storage=url,
        key_prefix=prefix,
        fail_open=False,  # a storage failure must show as 503, never as an admission
    )
    user = Identity(user_id="alice")
    warm = Identity(user_id="warm-up")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = warm if dict(scope["headers"]).get(b"x-warm") else user
        await inner(scope, receive, send)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
        assert (await client.get("/", headers={"x-warm": "1"})).status_code in (200, 429)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        responses = await asyncio.gather(*(client.get("/") for _ in range(n)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    return statuses.count(200)


if __name__ == "__main__":
    url, prefix, start_at, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    print(asyncio.run(main(url, prefix, start_at, n)))
