"""Streamed runs and the OpenAI-compatible shim against a plain run, and the time to the first
byte of a streamed run, with the offline provider and the full middleware stack.

The agent takes 3 steps, each with one offline model call (which streams its answer word by
word): a streamed run sends ``start``, 3 ``step``, the ``delta`` events and ``result``.

Run: ``cd benchmarks && ../.venv/bin/python bench_stream.py``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import anyio
from _harness import http_scope, print_table
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthood_mw.api import AgenthoodAPI, OfflineProvider, RunContext
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import MemoryLedger, MemoryTraceStore
from agenthood_mw.ratelimit import RateLimitMiddleware

SECRET = "bench-secret-" + "x" * 40
TASK = "refactor the auth middleware to use async/await"
RUN = json.dumps({"task": TASK}).encode()
STREAM = json.dumps({"task": TASK, "stream": True}).encode()
CHAT = json.dumps({"model": "dev", "messages": [{"role": "user", "content": TASK}]}).encode()
CHAT_STREAM = json.dumps(
    {
        "model": "dev",
        "messages": [{"role": "user", "content": TASK}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()


class ThreeSteps:
    name = "dev"
    description = "three steps, one offline model call each, streams its answer"

    async def run(self, task: str, ctx: RunContext) -> str:
        out = []
        for number in range(3):
            ctx.step("work", number=number)
            text = (await ctx.complete([{"role": "user", "content": task}])).text
            ctx.emit(text)
            out.append(text)
        return "".join(out)


class OneStep:
    name = "dev"
    description = "one step, no model call"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("work")
        return "ok"


class Feed:
    """Sends ``body`` once, then waits (as a server does until the client disconnects)."""

    def __init__(self, app: ASGIApp, body: bytes) -> None:
        self.app = app
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = False

        async def feed() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        await self.app(scope, feed, send)


def _stack(agent: Any = None) -> AgenthoodAPI:
    api = AgenthoodAPI(
        agents=[agent or ThreeSteps()],
        memory=InMemoryBackend(),
        provider=OfflineProvider(),
        ledger=MemoryLedger(),
        traces=MemoryTraceStore(retention="1h"),
        run_timeout=None,
    )
    api.add_middleware(RateLimitMiddleware, window="1m", max=10**9, burst=0)
    api.add_middleware(AuthMiddleware, strategy="jwt", secret=SECRET, audience="agenthood-api")
    return api


def _scope(path: str, body: bytes, token: str) -> Scope:
    return http_scope(
        path,
        method="POST",
        headers=[
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"authorization", f"Bearer {token}".encode()),
        ],
    )


async def _unused() -> Message:
    raise AssertionError("Feed supplies the body")


async def _one(app: ASGIApp, scope: Scope) -> tuple[float, float, bytes]:
    """(seconds to the first body byte, seconds to the end, body) of one request."""
    chunks: list[bytes] = []
    first = 0.0
    t0 = time.perf_counter()

    async def send(message: Message) -> None:
        nonlocal first
        if message["type"] == "http.response.body" and message.get("body"):
            first = first or time.perf_counter() - t0
            chunks.append(message["body"])

    await app(dict(scope), _unused, send)
    return first, time.perf_counter() - t0, b"".join(chunks)


def _ttfb(app: ASGIApp, scope: Scope, n: int = 300) -> tuple[float, float, bytes]:
    async def main() -> tuple[float, float, bytes]:
        firsts, totals, body = [], [], b""
        for _ in range(n):
            first, total, body = await _one(app, scope)
            firsts.append(first)
            totals.append(total)
        return statistics.median(firsts), statistics.median(totals), body

    return asyncio.run(main())


def _cpu_bench(
    variants: dict[str, tuple[ASGIApp, Scope]], *, per_round: int, rounds: int, warmup: int
) -> dict[str, float]:
    """CPU seconds per request (``time.process_time``: the shared machine's load does not
    count), median of interleaved rounds."""

    async def main() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in variants}
        for app, scope in variants.values():
            for _ in range(warmup):
                await _one(app, scope)
        for _ in range(rounds):
            for name, (app, scope) in variants.items():
                t0 = time.process_time()
                for _ in range(per_round):
                    await _one(app, scope)
                times[name].append((time.process_time() - t0) / per_round)
        return {name: statistics.median(v) for name, v in times.items()}

    return asyncio.run(main())


def main() -> None:
    token = mint_token(secret=SECRET, user_id="usr_8f3a")
    variants: dict[str, Any] = {
        "plain run (JSON)": (Feed(_stack(), RUN), _scope("/agents/dev/run", RUN, token)),
        "streamed run (SSE)": (Feed(_stack(), STREAM), _scope("/agents/dev/run", STREAM, token)),
        "plain run, 1 step, no model call": (
            Feed(_stack(OneStep()), RUN),
            _scope("/agents/dev/run", RUN, token),
        ),
        "streamed run, 1 step, no model call": (
            Feed(_stack(OneStep()), STREAM),
            _scope("/agents/dev/run", STREAM, token),
        ),
        "chat.completions": (Feed(_stack(), CHAT), _scope("/v1/chat/completions", CHAT, token)),
        "chat.completions, stream": (
            Feed(_stack(), CHAT_STREAM),
            _scope("/v1/chat/completions", CHAT_STREAM, token),
        ),
    }
    results = _cpu_bench(variants, per_round=100, rounds=9, warmup=100)
    print_table(results, baseline="plain run (JSON)")
    app, scope = variants["streamed run (SSE)"]
    first, total, body = _ttfb(app, scope)
    events = body.count(b"\n\n")
    extra = results["streamed run (SSE)"] - results["plain run (JSON)"]
    fixed = (
        results["streamed run, 1 step, no model call"] - results["plain run, 1 step, no model call"]
    )
    print(f"SSE events per streamed run: {events} (the 1-step run: 3)")
    print(f"SSE cost of streaming a run (3 events): {fixed * 1e6:.1f} µs/run")
    print(f"SSE overhead per further event: {(extra - fixed) / (events - 3) * 1e6:.2f} µs")
    app, scope = variants["chat.completions, stream"]
    _, _, chat_body = _ttfb(app, scope, n=20)
    chunks = chat_body.count(b"\n\n")
    chat_extra = results["chat.completions, stream"] - results["plain run (JSON)"]
    print(f"chat chunks per streamed run: {chunks}")
    print(f"OpenAI stream over a plain run: {chat_extra * 1e6:.1f} µs/run")
    shim = results["chat.completions"] - results["plain run (JSON)"]
    print(f"OpenAI shim (non-streamed) over a plain run: {shim * 1e6:.1f} µs/run")
    print(
        f"time to first byte, streamed run: {first * 1e6:.0f} µs (whole run {total * 1e6:.0f} µs)"
    )


if __name__ == "__main__":
    main()
