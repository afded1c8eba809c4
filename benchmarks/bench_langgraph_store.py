"""ScopedStore against LangGraph's own InMemoryStore: same operations, same data, same run.

Run: ``.venv/bin/python benchmarks/bench_langgraph_store.py [--items 10000] [--dims 64]
[--rounds 7] [--backends memory,sqlite]``

One scope holds ``--items`` items (in 10 namespaces ``("memories", "n0")`` ... ``"n9"``), each
with a ``text`` field indexed for semantic search. The "embedding" is a precomputed random
vector per text (a dictionary lookup, so embedding costs nothing and both stores get the same
vectors). Variants run in interleaved rounds; a figure is the median of the per-round means.

Measured per store: ``aget`` of a random key, ``aput`` (overwrite, no index), semantic
``asearch(query=..., limit=10)`` over all items (ScopedStore: from its snapshot of the scope,
valid while no write happened), one write followed by a semantic search (ScopedStore: the
snapshot is rebuilt from the backend), filtered ``asearch(filter=...)`` over all items. For
the cost of the scope checks, ``aget`` is also timed through the backend's public ``get``
(scope validation + record verification) and through its raw ``_get`` hook (the same storage
work without any check), plus ScopedStore's own key-decoding check alone.
"""

from __future__ import annotations

import os

# Single-threaded BLAS for both stores: on a shared 2-core machine a multi-threaded BLAS turns a
# 0.1 ms matrix-vector product into 5-10 ms of thread contention. Override by setting it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langgraph.store.memory import InMemoryStore

from agenthood_mw.integrations.langgraph import ScopedStore
from agenthood_mw.integrations.langgraph import _keys as store_keys
from agenthood_mw.memory import InMemoryBackend, MemoryBackend, MemoryScope, SQLiteBackend

SCOPE = MemoryScope.operator(user="bench-user", tenant="bench")
Op = Callable[[int], Awaitable[Any]]


def make_vectors(items: int, dims: int) -> dict[str, list[float]]:
    rng = random.Random(7)
    texts = [f"memory number {i}" for i in range(items)] + [f"query {q}" for q in range(50)]
    return {t: [rng.gauss(0, 1) for _ in range(dims)] for t in texts}


async def load(store: Any, items: int) -> None:
    for i in range(items):
        await store.aput(
            ("memories", f"n{i % 10}"), f"k{i}", {"text": f"memory number {i}", "n": i}
        )


async def timed(op: Op, n: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        await op(i)
    return (time.perf_counter() - t0) / n


async def compare(title: str, variants: dict[str, Op], n: int, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for op in variants.values():  # warm-up
        await timed(op, max(1, n // 10), 0)
    for r in range(rounds):
        for name, op in variants.items():
            samples[name].append(await timed(op, n, r * n))
    result = {name: statistics.median(s) for name, s in samples.items()}
    base = next(iter(result.values()))
    print(f"\n{title} (median of {rounds} round means, {n} ops per round)")
    for name, sec in result.items():
        print(f"  {name:<52} {sec * 1e6:>10.1f} µs  x{sec / base:5.2f}")
    return result


async def run(items: int, dims: int, rounds: int, backends: list[str], tmp: Path) -> None:
    vectors = make_vectors(items, dims)

    def embed(texts: list[str]) -> list[list[float]]:
        return [vectors[t] for t in texts]

    index = {"embed": embed, "dims": dims, "fields": ["text"]}
    theirs = InMemoryStore(index=index)  # type: ignore[arg-type]
    ours: dict[str, ScopedStore] = {}
    raw: dict[str, MemoryBackend] = {}
    for kind in backends:
        backend: MemoryBackend
        if kind == "memory":
            backend = InMemoryBackend(max_records=items + 100)
        else:
            backend = SQLiteBackend(tmp / "bench.db")
        raw[kind] = backend
        ours[kind] = ScopedStore(backend, scope=SCOPE, index=index)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    await load(theirs, items)
    for store in ours.values():
        await load(store, items)
    print(f"loaded {items} items x {1 + len(ours)} stores in {time.perf_counter() - t0:.1f} s")

    def key(i: int) -> tuple[tuple[str, str], str]:
        j = (i * 7919) % items
        return ("memories", f"n{j % 10}"), f"k{j}"

    def get(store: Any) -> Op:
        return lambda i: store.aget(*key(i))

    def put(store: Any) -> Op:
        return lambda i: store.aput(*key(i), {"text": "rewritten", "n": i}, index=False)

    def semantic(store: Any) -> Op:
        return lambda i: store.asearch(("memories",), query=f"query {i % 50}", limit=10)

    def filtered(store: Any) -> Op:
        return lambda i: store.asearch(("memories",), filter={"n": i % items}, limit=10)

    def via(kind: str, hook: bool) -> Op:
        backend = raw[kind]

        async def op(i: int) -> Any:
            mkey = store_keys.encode(*key(i))
            if hook:
                return await backend._get(SCOPE, "facts", mkey, backend.clock())
            return await backend.get(SCOPE, "facts", mkey)

        return op

    async def decode_only(i: int) -> Any:
        return store_keys.decode(store_keys.encode(*key(i)))

    get_variants: dict[str, Op] = {"LangGraph InMemoryStore.aget": get(theirs)}
    for kind in ours:
        get_variants[f"ScopedStore({kind}).aget"] = get(ours[kind])
        get_variants[f"  {kind} backend.get (public, checked)"] = via(kind, False)
        get_variants[f"  {kind} backend._get (hook, unchecked)"] = via(kind, True)
    get_variants["  ScopedStore key decode + canonical check"] = decode_only
    await compare("get one item", get_variants, 2000, rounds)
    semantic_v = {"LangGraph InMemoryStore.asearch(query)": semantic(theirs)}
    semantic_v |= {f"ScopedStore({k}).asearch(query)": semantic(s) for k, s in ours.items()}
    await compare(f"semantic search, {items} items, dims={dims}, top 10", semantic_v, 10, rounds)

    def write_then_search(store: Any) -> Op:
        async def op(i: int) -> Any:
            await store.aput(*key(i), {"text": f"memory number {(i * 7919) % items}", "n": i})
            return await store.asearch(("memories",), query=f"query {i % 50}", limit=10)

        return op

    cold_v = {"LangGraph InMemoryStore.aput + asearch(query)": write_then_search(theirs)}
    cold_v |= {
        f"ScopedStore({k}).aput + asearch(query) (snapshot rebuilt)": write_then_search(s)
        for k, s in ours.items()
    }
    await compare(f"write, then semantic search ({items} items)", cold_v, 5, rounds)
    filtered_v = {"LangGraph InMemoryStore.asearch(filter)": filtered(theirs)}
    filtered_v |= {f"ScopedStore({k}).asearch(filter)": filtered(s) for k, s in ours.items()}
    await compare(f"filtered search over {items} items", filtered_v, 10, rounds)
    put_v = {"LangGraph InMemoryStore.aput": put(theirs)}
    put_v |= {f"ScopedStore({k}).aput": put(s) for k, s in ours.items()}
    await compare("put (overwrite, not indexed)", put_v, 1000, rounds)
    for backend in raw.values():
        await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default="memory,sqlite")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.items, args.dims, args.rounds, backends, Path(tmp)))


if __name__ == "__main__":
    main()
