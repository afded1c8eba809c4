"""Memory backends: operations/s, latency at 10 000 scopes x 100 facts, and scope-check cost.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--backends memory,sqlite,redis,postgres]
[--scopes N] [--service-scopes N]``

For every backend the store is first loaded with ``scopes x 100`` facts (bulk-loaded through
the backend's own hooks or one SQL transaction, which is set-up, not measured), then:

* put / get / search: sequential awaited calls on random scopes, ops/s and p50/p99 latency;
* scope-check overhead: the public method (scope validation, key validation, verification of
  every returned record) against the raw protected hook doing the same storage work, timed in
  interleaved rounds (median of round means, via ``_harness.print_table``).

Redis and PostgreSQL are the shared services on 127.0.0.1; the benchmark writes under its own
key prefix / throwaway schema and deletes exactly that afterwards. They default to 1 000 scopes
(``--service-scopes``) because loading 1 M rows into the shared services takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import print_table

from agenthood_mw.memory import (
    InMemoryBackend,
    MemoryBackend,
    MemoryScope,
    Record,
    SQLiteBackend,
)
from agenthood_mw.memory._codec import encode_value, search_terms, search_text

FACTS_PER_SCOPE = 100
REDIS_URL = os.environ.get("AGENTHOOD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "AGENTHOOD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def scope_of(i: int) -> MemoryScope:
    return MemoryScope.operator(user=f"usr_{i:05d}", tenant="bench")


def fact_value(i: int, n: int) -> dict[str, Any]:
    return {"text": f"user {i} fact {n} likes topic{n % 10}", "n": n}


async def load(backend: MemoryBackend, scopes: int) -> None:
    """Bulk-load scopes x FACTS_PER_SCOPE facts (set-up, not measured)."""
    now = backend.clock()
    if isinstance(backend, SQLiteBackend):
        rows = [
            (
                scope_of(i).storage_key,
                "facts",
                f"fact/{n:03d}",
                json.dumps(fact_value(i, n), separators=(",", ":")),
                search_text(f"fact/{n:03d}", fact_value(i, n)),
                now,
                None,
            )
            for i in range(scopes)
            for n in range(FACTS_PER_SCOPE)
        ]

        def bulk(conn: Any) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO memory_kv VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")

        await backend._run(bulk)
        return
    if type(backend).__name__ == "PostgresBackend":
        await load_postgres(backend, scopes, now)
        return
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            scope = scope_of(i)
            for n in range(FACTS_PER_SCOPE):
                value = fact_value(i, n)
                key = f"fact/{n:03d}"
                await backend._put(
                    scope, "facts", key, encode_value(value), search_text(key, value), now, None
                )

    await asyncio.gather(*(one(i) for i in range(scopes)))


async def load_postgres(backend: Any, scopes: int, now: float) -> None:
    from agenthood_mw.memory.postgres import _digest

    await backend._conn_ready()
    async with backend._pool.connection() as conn, conn.cursor() as cur:
        async with cur.copy(
            f"COPY {backend._q}.memory_kv (scope_key, scope_name, tier, key, value, search, "
            "updated_at, expires_at) FROM STDIN"
        ) as copy:
            for i in range(scopes):
                scope = scope_of(i)
                for n in range(FACTS_PER_SCOPE):
                    key, value = f"fact/{n:03d}", fact_value(i, n)
                    await copy.write_row(
                        (
                            _digest(scope),
                            scope.storage_key,
                            "facts",
                            key,
                            json.dumps(value, separators=(",", ":")),
                            search_text(key, value),
                            now,
                            None,
                        )
                    )
        await conn.execute(f"ANALYZE {backend._q}.memory_kv")


async def timed(n: int, op: Callable[[int], Awaitable[Any]]) -> tuple[float, list[float]]:
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        await op(i)
        lat.append(time.perf_counter() - s)
    return time.perf_counter() - t0, lat


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def overhead(
    variants: dict[str, Callable[[int], Awaitable[Any]]], per_round: int, rounds: int
) -> dict[str, float]:
    results: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        for i in range(min(per_round, 200)):
            await fn(i)
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                for i in range(r * per_round, (r + 1) * per_round):
                    await fn(i)
                results[name].append((time.perf_counter() - t0) / per_round)
    finally:
        gc.enable()
    return {name: statistics.median(v) for name, v in results.items()}


async def run_backend(name: str, backend: MemoryBackend, scopes: int, ops: int) -> list[str]:
    out: list[str] = []
    t0 = time.perf_counter()
    await load(backend, scopes)
    out.append(
        f"## {name}: {scopes} scopes x {FACTS_PER_SCOPE} facts "
        f"(loaded in {time.perf_counter() - t0:.1f} s)"
    )
    rng = random.Random(7)
    picks = [(scope_of(rng.randrange(scopes)), rng.randrange(FACTS_PER_SCOPE)) for _ in range(ops)]
    value = {"text": "a new fact about topic3", "n": 1}

    async def put(i: int) -> Any:
        scope, n = picks[i % ops]
        return await backend.put(scope, "facts", f"new/{n:03d}", value)

    async def get(i: int) -> Any:
        scope, n = picks[i % ops]
        return await backend.get(scope, "facts", f"fact/{n:03d}")

    async def search(i: int) -> Any:
        scope, n = picks[i % ops]
        return await backend.search(scope, "facts", f"topic{n % 10}", limit=10)

    async def list_page(i: int) -> Any:
        scope, _ = picks[i % ops]
        return await backend.list(scope, "facts", "fact/", limit=20)

    out.append(f"{'operation':<28} {'ops/s':>10} {'p50 µs':>10} {'p99 µs':>10}")
    for label, fn in (
        ("put", put),
        ("get", get),
        ("search (10 hits of 100)", search),
        ("list (page of 20)", list_page),
    ):
        total, lat = await timed(ops, fn)
        out.append(
            f"{label:<28} {ops / total:>10.0f} {pct(lat, 0.5) * 1e6:>10.1f} "
            f"{pct(lat, 0.99) * 1e6:>10.1f}"
        )
    for line in out:
        print(line)

    now = backend.clock()
    value_json = encode_value(value)
    search_txt = search_text("new/000", value)
    terms = search_terms("topic3")

    async def raw_get(i: int) -> Any:
        scope, n = picks[i % ops]
        return await backend._get(scope, "facts", f"fact/{n:03d}", now)

    async def raw_put(i: int) -> Any:
        scope, n = picks[i % ops]
        return await backend._put(scope, "facts", f"new/{n:03d}", value_json, search_txt, now, None)

    async def raw_put_encoding(i: int) -> Any:
        scope, n = picks[i % ops]
        key = f"new/{n:03d}"
        return await backend._put(
            scope, "facts", key, encode_value(value), search_text(key, value), now, None
        )

    async def raw_search(i: int) -> Any:
        scope, _ = picks[i % ops]
        return await backend._search(scope, "facts", terms, 10, now)

    async def pub_search(i: int) -> Any:
        scope, _ = picks[i % ops]
        return await backend.search(scope, "facts", "topic3", limit=10)

    per_round = max(50, ops // 10)
    for label, variants in (
        ("get", {"raw hook": raw_get, "public get": get}),
        (
            "put",
            {
                "raw hook": raw_put,
                "raw hook + JSON encode/search text": raw_put_encoding,
                "public put": put,
            },
        ),
        ("search", {"raw hook": raw_search, "public search": pub_search}),
    ):
        print(f"\nscope-check overhead, {label} ({name}):")
        res = await overhead(variants, per_round=per_round, rounds=15)
        lines = print_table(res, baseline="raw hook")
        out.append(f"\nscope-check overhead, {label}:")
        out += lines
    print()
    return out


class _Instant(MemoryBackend):
    """Hooks that return prebuilt answers at once: isolates the CPU cost of the public checks."""

    def __init__(self) -> None:
        super().__init__()
        self.scope = scope_of(0)
        sk = self.scope.storage_key
        self.rec = Record(sk, "facts", "fact/001", {"text": "x", "n": 1}, 0.0, None)
        self.page = [Record(sk, "facts", f"fact/{n:03d}", {"n": n}, 0.0, None) for n in range(21)]

    async def _put(self, scope: Any, tier: Any, key: Any, *rest: Any) -> Record:
        return Record(scope.storage_key, tier, key, None, 0.0, None)

    async def _get(self, scope: Any, tier: Any, key: Any, now: float) -> Record:
        return self.rec

    async def _delete(self, *args: Any) -> bool:
        return True

    async def _list(self, *args: Any) -> list[Record]:
        return self.page

    async def _search(self, *args: Any) -> list[Record]:
        return self.page[:10]

    async def _append_event(self, *args: Any) -> Any:
        raise NotImplementedError

    async def _list_events(self, *args: Any) -> list[Any]:
        return []

    async def _erase(self, scope: Any) -> int:
        return 0


async def check_cost() -> list[str]:
    """CPU cost of the public methods over their hooks, with hooks that do no work."""
    b = _Instant()
    s = b.scope
    now = 0.0
    variants: dict[str, Callable[[int], Awaitable[Any]]] = {
        "get: raw hook": lambda i: b._get(s, "facts", "fact/001", now),
        "get: public": lambda i: b.get(s, "facts", "fact/001"),
        "put: raw hook (value pre-encoded)": lambda i: b._put(
            s, "facts", "k", "1", "k 1", now, None
        ),
        "put: public (incl. JSON encode)": lambda i: b.put(s, "facts", "k", {"text": "x", "n": 1}),
        "list 20: raw hook": lambda i: b._list(s, "facts", "fact/", None, None, 21, now),
        "list 20: public": lambda i: b.list(s, "facts", "fact/", limit=20),
        "search 10: raw hook": lambda i: b._search(s, "facts", ("x",), 10, now),
        "search 10: public": lambda i: b.search(s, "facts", "x", limit=10),
    }
    res = await overhead(variants, per_round=20_000, rounds=9)
    lines = ["\nCPU cost of the scope checks (hooks that return at once), µs per call:"]
    for op in ("get", "put", "list 20", "search 10"):
        raw = next(v for k, v in res.items() if k.startswith(f"{op}: raw"))
        pub = next(v for k, v in res.items() if k.startswith(f"{op}: public"))
        lines.append(
            f"{op:<10} raw {raw * 1e6:6.2f}  public {pub * 1e6:6.2f}  "
            f"checks {(pub - raw) * 1e6:6.2f}"
        )
    for line in lines:
        print(line)
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="memory,sqlite,redis,postgres")
    parser.add_argument("--scopes", type=int, default=10_000)
    parser.add_argument("--service-scopes", type=int, default=1_000)
    parser.add_argument("--ops", type=int, default=5_000)
    args = parser.parse_args()
    report: list[str] = [f"python {sys.version.split()[0]}, ops per measurement: {args.ops}"]
    report += await check_cost()
    for name in filter(None, args.backends.split(",")):
        if name == "memory":
            backend: MemoryBackend = InMemoryBackend(max_scopes=args.scopes + 10)
            report += await run_backend("InMemoryBackend", backend, args.scopes, args.ops)
            await backend.close()
        elif name == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                backend = SQLiteBackend(os.path.join(tmp, "bench.db"))
                report += await run_backend("SQLiteBackend", backend, args.scopes, args.ops)
                await backend.close()
        elif name == "redis":
            from agenthood_mw.memory.redis import RedisBackend

            prefix = f"agenthood-bench:{uuid.uuid4().hex[:8]}:"
            backend = RedisBackend(REDIS_URL, key_prefix=prefix)
            try:
                report += await run_backend("RedisBackend", backend, args.service_scopes, args.ops)
            finally:
                for i in range(args.service_scopes):
                    await backend.erase(scope_of(i))
                await backend.close()
        elif name == "postgres":
            import psycopg

            from agenthood_mw.memory.postgres import PostgresBackend

            schema = f"agenthood_bench_{uuid.uuid4().hex[:8]}"
            backend = PostgresBackend(POSTGRES_DSN, schema=schema, max_size=4)
            try:
                report += await run_backend(
                    "PostgresBackend", backend, args.service_scopes, args.ops
                )
            finally:
                await backend.close()
                with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        else:
            raise SystemExit(f"unknown backend {name!r}")
    print("\n".join(report))


if __name__ == "__main__":
    asyncio.run(main())
