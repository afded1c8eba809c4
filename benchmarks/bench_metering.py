"""CostMeterMiddleware cost per request, with the memory and SQLite ledgers, alone and in the
full stack (auth + rate limit + metering).

Run: ``.venv/bin/python benchmarks/bench_metering.py``

Variants (raw ASGI, no HTTP server, see ``_harness.py``), on the bare trivial route:

* metering (memory): ledger and traces ``memory://``, spike alerts on (default logging sink);
* metering (memory) + 1 record: the route also reports one model call (``meter.record``);
* metering (SQLite): ledger and traces in one SQLite file, written in batches by the
  background writer thread (off the request path); after each of its rounds, outside the
  timing, the writer is flushed so its work never runs while another variant is timed;
  ``--cpu`` also prints the CPU including that deferred work;
* full stack (memory): ``AuthMiddleware`` (HS256 JWT, repeated token) -> ``RateLimitMiddleware``
  (memory, never refusing) -> ``CostMeterMiddleware`` (memory); goal <= 1.8x bare;
* full stack (SQLite ledger): the same with the SQLite ledger; goal <= 2.5x bare;
* auth + rate limit (no metering): the floor the full stack cannot go below.

Each metered request writes one run record (and its usage events) and one trace.

``--cpu`` also prints CPU time per request (``time.process_time``, so the SQLite writer
thread's work counts; the minimum of 41 interleaved rounds of 500 requests): far less
sensitive than wall-clock medians to the other processes sharing the machine.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import bench, call, http_scope, print_table, trivial_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agenthood_mw import Identity
from agenthood_mw.metering import CostMeterMiddleware, PriceTable, current_meter

SECRET = "bench-secret-" + "x" * 40
AUDIENCE = "agenthood-api"
PRICES = PriceTable({"gpt-4o": {"input": "2.50", "output": "10.00", "cached_input": "1.25"}})


def recording_app() -> Any:
    async def run(request: Request) -> PlainTextResponse:
        current_meter().record(model="gpt-4o", input_tokens=1840, output_tokens=220)
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/agents/{name}/run", run, methods=["GET", "POST"])])


def full_stack(ledger: str | None) -> tuple[Any, Any, str]:
    """Auth -> rate limit -> metering (``ledger=None``: no metering, the floor of the stack)."""
    from agenthood_mw.auth import AuthMiddleware, mint_token
    from agenthood_mw.ratelimit import RateLimitMiddleware

    metered = (
        None if ledger is None else CostMeterMiddleware(trivial_app(), prices=PRICES, ledger=ledger)
    )
    limited = RateLimitMiddleware(metered or trivial_app(), window="1m", max=10**9)
    app = AuthMiddleware(limited, strategy="jwt", secret=SECRET, audience=AUDIENCE)
    token = mint_token(secret=SECRET, user_id="usr_8f3a", scopes=["agents:run"])
    return app, metered, token


def cpu_times(
    variants: dict[str, Any],
    *,
    rounds: int = 41,
    n: int = 500,
    settle: dict[str, Any] | None = None,
    totals: dict[str, float] | None = None,
) -> dict[str, float]:
    """CPU seconds per request of every variant: minimum over interleaved rounds.

    ``settle``: as in ``_harness.bench``, awaited after the variant's round, outside the
    figure. ``totals`` (filled in when given): per settled variant, the minimum over rounds of
    the round's CPU plus the settle's -- the request path and all the deferred work.
    """
    settle = settle or {}

    async def run() -> dict[str, float]:
        best = {name: float("inf") for name in variants}
        for app, factory in variants.values():
            for i in range(300):
                await call(app, factory(i))
        gc.collect()
        gc.disable()
        try:
            for _ in range(rounds):
                for name, (app, factory) in variants.items():
                    t0 = time.process_time()
                    for i in range(n):
                        await call(app, factory(i))
                    t1 = time.process_time()
                    best[name] = min(best[name], (t1 - t0) / n)
                    if name in settle:
                        await settle[name]()
                        if totals is not None:
                            total = (time.process_time() - t0) / n
                            totals[name] = min(totals.get(name, float("inf")), total)
        finally:
            gc.enable()
        return best

    return asyncio.run(run())


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="agenthood-bench-"))
    user = Identity(user_id="usr_8f3a")
    bare = trivial_app()
    path = "/agents/the-developer/run"
    bare_scope = http_scope(path)
    user_scope = {**http_scope(path), "user": user}

    mem = CostMeterMiddleware(trivial_app(), prices=PRICES, ledger="memory://")
    mem_rec = CostMeterMiddleware(recording_app(), prices=PRICES, ledger="memory://")
    sql = CostMeterMiddleware(trivial_app(), prices=PRICES, ledger=f"sqlite:///{tmp}/costs.db")
    variants: dict[str, Any] = {
        "bare": (bare, lambda i: bare_scope),
        "metering (memory)": (mem, lambda i: user_scope),
        "metering (memory) + 1 record": (mem_rec, lambda i: user_scope),
        "metering (SQLite ledger)": (sql, lambda i: user_scope),
    }
    closers = [mem, mem_rec, sql]
    sql_stack_meter = None
    try:
        stack_mem, m1, token = full_stack("memory://")
        stack_sql, m2, _ = full_stack(f"sqlite:///{tmp}/stack.db")
        floor, _, _ = full_stack(None)
        auth_scope = http_scope(path, headers=[(b"authorization", f"Bearer {token}".encode())])
        variants["auth + rate limit (no metering)"] = (floor, lambda i: auth_scope)
        variants["full stack (memory)"] = (stack_mem, lambda i: auth_scope)
        variants["full stack (SQLite ledger)"] = (stack_sql, lambda i: auth_scope)
        closers += [m1, m2]
        sql_stack_meter = m2
    except ImportError as exc:  # pragma: no cover - before the other areas exist
        print(f"(full stack skipped: {exc})")
    # The SQLite writer thread finishes each round's batches after the round, so its work does
    # not run while the next variant is timed.
    settle = {"metering (SQLite ledger)": sql.flush}
    if sql_stack_meter is not None:
        settle["full stack (SQLite ledger)"] = sql_stack_meter.flush
    print_table(bench(variants, settle=settle))
    if "--cpu" in sys.argv:
        print("\n== CPU time per request (min of 41 interleaved rounds of 500)")
        totals: dict[str, float] = {}
        cpu = cpu_times(variants, settle=settle, totals=totals)
        print_table(cpu)
        print("\n== CPU per request including the SQLite writer thread's deferred work")
        for name, seconds in totals.items():
            print(f"{name:<40} {seconds * 1e6:>10.2f} {seconds / cpu['bare']:>8.2f}")
    for mw in closers:
        asyncio.run(mw.close())


if __name__ == "__main__":
    main()
