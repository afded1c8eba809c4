"""The app the served streaming and OpenAI-SDK tests run under a real uvicorn.

``uvicorn --factory stream_server:make_app`` (with ``--app-dir tests/api``); configured by
environment: ``AGENTHOOD_JWT_SECRET``, ``STREAM_LEDGER`` (a ledger URL), ``STREAM_KEYS`` (a
SQLite API-key store path), ``STREAM_BUDGET`` (a per-user daily spend budget in dollars).
"""

from __future__ import annotations

import os
import time

import anyio

from agenthood_mw import AgenthoodAPI, AuthMiddleware, Budget, RateLimitMiddleware
from agenthood_mw.api import RunContext
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import SQLiteKeyStore


class Chatty:
    """Streams a long answer slowly: one step, one model call and one output piece at a time."""

    name = "chatty"
    description = "talks for a long time"

    async def run(self, task: str, ctx: RunContext) -> str:
        pieces: list[str] = []
        for number in range(1, 41):
            ctx.step("say", number=number)
            completion = await ctx.complete([{"role": "user", "content": f"{task} #{number}"}])
            piece = f"{completion.text}\n"
            pieces.append(piece)
            ctx.partial_output = "".join(pieces)
            ctx.emit(piece)
            await anyio.sleep(0.05)
        return "".join(pieces)


class SyncChatty:
    """The same as a plain ``def`` agent (a worker thread, which cannot be cancelled)."""

    name = "sync-chatty"
    description = "talks for a long time, in a thread"

    def run(self, task: str, ctx: RunContext) -> str:
        pieces: list[str] = []
        for number in range(1, 41):
            ctx.step("say", number=number)
            completion = ctx.call(ctx.complete, [{"role": "user", "content": f"{task} #{number}"}])
            pieces.append(f"{completion.text}\n")
            ctx.partial_output = "".join(pieces)
            ctx.emit(pieces[-1])
            time.sleep(0.05)
        return "".join(pieces)


def make_app() -> AgenthoodAPI:
    budget = os.environ.get("STREAM_BUDGET")
    meter_options = {"budgets": [Budget(per="user", limit=budget, window="1d")]} if budget else {}
    api = AgenthoodAPI(
        agents=[*demo_agents(), Chatty(), SyncChatty()],
        ledger=os.environ["STREAM_LEDGER"],
        meter_options=meter_options,
        heartbeat=0.5,
    )
    api.add_middleware(RateLimitMiddleware, window="1m", max=20, burst=5, storage="memory://")
    api.add_middleware(
        AuthMiddleware,
        strategy=["jwt", "api_key"],
        secret=os.environ["AGENTHOOD_JWT_SECRET"],
        key_store=SQLiteKeyStore(os.environ["STREAM_KEYS"]),
        exempt_paths=["/health"],
    )
    return api
