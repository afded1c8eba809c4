"""Run ids: 32 hex digits of 128 random bits, unpredictable, unique across threads and forked
workers (issue 11 #5: they used to be sequential, ``...fbf000``, ``...fbf001``, which told any
user the service's traffic between two of their own calls)."""

from __future__ import annotations

import itertools
import multiprocessing
import threading

from agenthood_mw.metering._meter import new_run_id


def test_ids_are_32_hex_digits_and_unique() -> None:
    ids = [new_run_id() for _ in range(5 * 128 + 7)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_consecutive_ids_are_unpredictable() -> None:
    ids = [int(new_run_id(), 16) for _ in range(2000)]
    # No shared process prefix, no block counter, no steady step: every 16-bit slice of the
    # id takes (nearly) as many values as there are ids, and consecutive ids differ in about
    # half of their 128 bits.
    for shift in range(0, 128, 16):
        assert len({(i >> shift) & 0xFFFF for i in ids}) > 1900
    steps = {b - a for a, b in itertools.pairwise(ids)}
    assert len(steps) == len(ids) - 1
    flips = [bin(a ^ b).count("1") for a, b in itertools.pairwise(ids)]
    assert 60 < sum(flips) / len(flips) < 68
    # Every bit position is set in about half of the ids.
    for bit in range(128):
        assert 850 < sum((i >> bit) & 1 for i in ids) < 1150


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


def test_a_forked_worker_never_repeats_its_parents_ids() -> None:
    parent = [new_run_id() for _ in range(300)]
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    workers = [context.Process(target=_child_ids, args=(queue,)) for _ in range(2)]
    for w in workers:
        w.start()
    children = [queue.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    after = [new_run_id() for _ in range(300)]  # the parent after the fork
    every = parent + after + [i for c in children for i in c]
    assert len(set(every)) == len(every)
