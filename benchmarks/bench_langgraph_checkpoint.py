"""ScopedCheckpointer against LangGraph's own savers: the same graph-step workload, same run.

Run: ``.venv/bin/python benchmarks/bench_langgraph_checkpoint.py [--backends memory,sqlite,
postgres,redis] [--rounds N] [--steps N]``

One "step" is what a LangGraph super-step asks of its checkpointer: ``aput`` a checkpoint
(8 messages of ~100 characters plus a counter), ``aput_writes`` two writes, ``aget_tuple`` the
thread's latest checkpoint. Each round runs ``--steps`` steps over 10 threads for every variant,
rounds interleaved (LangGraph saver, ScopedCheckpointer, LangGraph saver, ...) so that machine
drift hits both alike; the figure is the median of the per-round means, in µs per step.

Pairs (same storage engine on both sides): ``InMemorySaver`` vs ``ScopedCheckpointer`` on
``InMemoryBackend``; ``AsyncSqliteSaver`` (langgraph-checkpoint-sqlite) vs ``SQLiteBackend``;
``AsyncPostgresSaver`` (langgraph-checkpoint-postgres, its own throwaway schema) vs
``PostgresBackend``. Redis has no LangGraph saver installed here: ScopedCheckpointer alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

from agenthood_mw.integrations.langgraph import ScopedCheckpointer
from agenthood_mw.memory import InMemoryBackend, MemoryScope, SQLiteBackend

REDIS_URL = os.environ.get("AGENTHOOD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "AGENTHOOD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
SCOPE = MemoryScope.operator(user="bench-user", tenant="bench")
THREADS = 10
MESSAGES = [f"message {i}: " + "lorem ipsum dolor sit amet " * 3 for i in range(8)]

Saver = BaseCheckpointSaver[Any]


async def step(saver: Saver, thread: str, n: int) -> None:
    parent = await saver.aget_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    cp = empty_checkpoint()
    cp["channel_values"] = {"messages": MESSAGES, "n": n}
    cp["channel_versions"] = {"messages": n + 1, "n": n + 1}
    config: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent.config["configurable"]["checkpoint_id"]
    metadata: Any = {"source": "loop", "step": n, "parents": {}}
    stored = await saver.aput(config, cp, metadata, {"messages": n + 1, "n": n + 1})
    await saver.aput_writes(stored, [("messages", MESSAGES[0]), ("n", n)], f"task-{n}")


async def run_round(saver: Saver, steps: int, tag: str) -> float:
    threads = [f"{tag}-{uuid.uuid4().hex[:8]}-{i}" for i in range(THREADS)]
    gc.collect()
    start = time.perf_counter()
    for n in range(steps):
        await step(saver, threads[n % THREADS], n)
    return (time.perf_counter() - start) / steps


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    import psycopg

    schema = f"bench_lg_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def pair(kind: str, stack: AsyncExitStack, tmp: Path) -> tuple[Saver | None, Saver]:
    """(LangGraph's saver or None, ScopedCheckpointer) on the same storage engine."""
    if kind == "memory":
        return InMemorySaver(), ScopedCheckpointer(InMemoryBackend(), scope=SCOPE)
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        theirs = await stack.enter_async_context(
            AsyncSqliteSaver.from_conn_string(str(tmp / "langgraph.db"))
        )
        ours = SQLiteBackend(tmp / "agenthood.db")
        stack.push_async_callback(ours.close)
        return theirs, ScopedCheckpointer(ours, scope=SCOPE)
    if kind == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        from agenthood_mw.memory.postgres import PostgresBackend

        lg_schema = await stack.enter_async_context(pg_schema())
        our_schema = await stack.enter_async_context(pg_schema())
        dsn = f"{POSTGRES_DSN}?options=-csearch_path%3D{lg_schema}"
        pg = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(dsn))
        await pg.setup()
        backend = PostgresBackend(POSTGRES_DSN, schema=our_schema, max_size=4)
        stack.push_async_callback(backend.close)
        return pg, ScopedCheckpointer(backend, scope=SCOPE)
    if kind == "redis":
        from agenthood_mw.memory.redis import RedisBackend

        prefix = f"bench-lg-{uuid.uuid4().hex[:8]}:"
        backend = RedisBackend(REDIS_URL, key_prefix=prefix)
        stack.push_async_callback(_redis_cleanup, backend, prefix)
        return None, ScopedCheckpointer(backend, scope=SCOPE)
    raise ValueError(f"unknown backend {kind!r}")


async def _redis_cleanup(backend: Any, prefix: str) -> None:
    await backend.erase(SCOPE)
    await backend.close()
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=prefix.replace("*", r"\*") + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def bench(kind: str, rounds: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            theirs, ours = await pair(kind, stack, Path(tmp))
            variants: list[tuple[str, Saver]] = [("ScopedCheckpointer", ours)]
            if theirs is not None:
                variants.insert(0, (type(theirs).__name__, theirs))
            times: dict[str, list[float]] = {name: [] for name, _ in variants}
            for saver_name, saver in variants:  # warm-up (connections, tables, caches)
                await run_round(saver, THREADS, "warm")
                del saver_name
            for _ in range(rounds):
                for name, saver in variants:
                    times[name].append(await run_round(saver, steps, name))
            report(kind, {name: statistics.median(t) for name, t in times.items()})


def report(kind: str, results: dict[str, float]) -> None:
    base = next(iter(results.values()))
    for name, seconds in results.items():
        print(f"{kind:<9} {name:<22} {seconds * 1e6:>10.1f} µs/step {seconds / base:>7.2f}x")


def main(argv: list[str] | None = None, runner: Callable[..., Any] = asyncio.run) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="memory,sqlite,postgres,redis")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    for kind in args.backends.split(","):
        runner(bench(kind.strip(), args.rounds, args.steps))


if __name__ == "__main__":
    main()
