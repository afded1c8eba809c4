"""AgenthoodAPI cost per run request: the bare route vs. the API with a trivial agent, with the
full middleware stack (auth + rate limit + metering), and with one memory write and one
offline model call.

Run: ``.venv/bin/python benchmarks/bench_api.py``
"""

from __future__ import annotations

import json
from typing import Any

from _harness import bench, http_scope, print_table, trivial_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthood_mw import Identity
from agenthood_mw.api import AgenthoodAPI, OfflineProvider, RunContext
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import MemoryLedger, MemoryTraceStore
from agenthood_mw.ratelimit import RateLimitMiddleware

SECRET = "bench-secret-" + "x" * 40
BODY = json.dumps({"task": "refactor the auth middleware to use async/await"}).encode()
USER = Identity(user_id="usr_8f3a")


class Trivial:
    name = "dev"
    description = "returns at once"

    async def run(self, task: str, ctx: RunContext) -> str:
        return "ok"


class Working:
    name = "dev"
    description = "one step, one memory write, one model call"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("work")
        await ctx.memory.facts.put("last", task)
        return (await ctx.complete([{"role": "user", "content": task}])).text


class WithBody:
    """Feeds the run request body (the harness sends an empty one) and, optionally, a user."""

    def __init__(self, app: ASGIApp, *, user: Identity | None = None) -> None:
        self.app = app
        self.user = user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def body() -> Message:
            return {"type": "http.request", "body": BODY, "more_body": False}

        if self.user is not None:
            scope["user"] = self.user
        await self.app(scope, body, send)


def _api(agent: Any) -> AgenthoodAPI:
    return AgenthoodAPI(
        agents=[agent],
        memory=InMemoryBackend(),
        provider=OfflineProvider(),
        ledger=MemoryLedger(),
        traces=MemoryTraceStore(retention="1h"),
        run_timeout=None,
    )


def _stack(agent: Any) -> AgenthoodAPI:
    api = _api(agent)
    api.add_middleware(RateLimitMiddleware, window="1m", max=10**9, burst=0)
    api.add_middleware(AuthMiddleware, strategy="jwt", secret=SECRET, audience="agenthood-api")
    return api


def main() -> None:
    token = mint_token(secret=SECRET, user_id="usr_8f3a")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    plain = http_scope("/agents/dev/run", method="POST", headers=headers)
    authed = http_scope(
        "/agents/dev/run",
        method="POST",
        headers=[*headers, (b"authorization", f"Bearer {token}".encode())],
    )
    results = bench(
        {
            "bare": (WithBody(trivial_app()), lambda i: plain),
            "AgenthoodAPI, trivial agent": (WithBody(_api(Trivial()), user=USER), lambda i: plain),
            "auth + rate limit + API, trivial agent": (
                WithBody(_stack(Trivial())),
                lambda i: authed,
            ),
            "full stack, memory write + offline model call": (
                WithBody(_stack(Working())),
                lambda i: authed,
            ),
        },
        requests_per_round=300,
        rounds=9,
        warmup=200,
    )
    print_table(results)


if __name__ == "__main__":
    main()
