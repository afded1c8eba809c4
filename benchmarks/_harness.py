"""Raw-ASGI benchmark harness: no HTTP client, no server, so only middleware cost is measured.

Each variant is an ASGI app. Rounds are interleaved (bare, A, B, bare, A, B, ...) so that machine
drift hits every variant alike; the reported figure is the median of the per-round means.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Scope

__all__ = ["bench", "call", "http_scope", "print_table", "trivial_app"]


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> Scope:
    """A minimal HTTP scope as uvicorn would send it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(app: ASGIApp, scope: Scope) -> int:
    """Drive one request through ``app``; return the response status."""
    status = 0

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), _receive, send)
    return status


Settle = Callable[[], Awaitable[None]]


async def _round(
    app: ASGIApp,
    scope_factory: Callable[[int], Scope],
    n: int,
    start: int,
    settle: Settle | None = None,
) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        await call(app, scope_factory(i))
    elapsed = time.perf_counter() - t0
    if settle is not None:  # after the timing, before the next variant's round
        await settle()
    return elapsed / n


def bench(
    variants: Mapping[str, tuple[ASGIApp, Callable[[int], Scope]]],
    *,
    requests_per_round: int = 2000,
    rounds: int = 15,
    warmup: int = 500,
    settle: Mapping[str, Settle] | None = None,
) -> dict[str, float]:
    """Time every variant; return seconds per request (median of interleaved round means).

    ``settle[name]`` is awaited after each of that variant's rounds, outside the timing: a
    variant that moves work off the request path to a background thread (a batched ledger
    writer) finishes it there, so it does not run during -- and slow down -- whichever variant
    is timed next. The variant's own figure is its request path (with whatever the background
    thread takes from it while the round runs).
    """
    settle = settle or {}

    async def main() -> dict[str, float]:
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _name, (app, factory) in variants.items():
            await _round(app, factory, warmup, 0)
        gc.collect()
        gc.disable()
        try:
            for r in range(rounds):
                for name, (app, factory) in variants.items():
                    per = await _round(
                        app, factory, requests_per_round, (r + 1) * 10**6, settle.get(name)
                    )
                    results[name].append(per)
        finally:
            gc.enable()
        return {name: statistics.median(v) for name, v in results.items()}

    return asyncio.run(main())


def print_table(results: Mapping[str, float], *, baseline: str = "bare") -> list[str]:
    """Print (and return) ``name  µs/request  ratio-to-baseline`` lines."""
    base = results[baseline]
    lines = [f"{'variant':<40} {'µs/req':>10} {'× bare':>8}"]
    for name, seconds in results.items():
        lines.append(f"{name:<40} {seconds * 1e6:>10.2f} {seconds / base:>8.2f}")
    for line in lines:
        print(line)
    return lines


def trivial_app() -> Any:
    """The bare trivial Starlette route every benchmark compares against."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/", hello), Route("/agents/{name}/run", hello, methods=["GET", "POST"])]
    )
