"""Run ids: 32 hex digits, unique across threads, block boundaries and forked workers."""

from __future__ import annotations

import multiprocessing
import threading

from agenthood_mw.metering._meter import new_run_id


def test_ids_are_32_hex_digits_and_unique_across_block_boundaries() -> None:
    ids = [new_run_id() for _ in range(5 * 256 + 7)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:16] for i in ids}) == 1  # one process prefix
    assert len({i[:30] for i in ids}) >= 5  # several blocks of 256


def test_concurrent_threads_never_share_an_id() -> None:
    per_thread = 20_000
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def draw(k: int) -> None:
        start.wait()
        out = results[k]
        for _ in range(per_thread):
            out.append(new_run_id())

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for r in results for i in r]
    assert len(every) == 8 * per_thread
    assert len(set(every)) == len(every)


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_run_id() for _ in range(300)])


def test_a_forked_worker_draws_a_new_prefix() -> None:
    parent = [new_run_id() for _ in range(300)]
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    workers = [context.Process(target=_child_ids, args=(queue,)) for _ in range(2)]
    for w in workers:
        w.start()
    children = [queue.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    prefixes = {parent[0][:16]} | {c[0][:16] for c in children}
    assert len(prefixes) == 3
    every = parent + [i for c in children for i in c]
    assert len(set(every)) == len(every)
