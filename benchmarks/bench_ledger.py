"""Ledger write throughput: usage rows per second into SQLite and PostgreSQL.

Run: ``.venv/bin/python benchmarks/bench_ledger.py [--rows 200000] [--pg DSN]``

Two measurements per database, each on fresh tables (PostgreSQL: a throwaway schema, dropped
afterwards; DSN from ``--pg`` or ``$AGENTHOOD_TEST_POSTGRES_DSN``, default the local server):

* ``ledger``: ``Ledger.write_usage`` alone, batches of 2000 runs (the recorder's largest batch),
  usage rows plus one run row per run, in one transaction per batch;
* ``recorder``: what ``CostMeterMiddleware`` does: ``Recorder.submit`` of every run (each
  appended to the crash spool first), then ``flush()``; the writer thread writes ledger rows,
  run rows and traces. This is the "200 000 usage rows, then ``flush()``" case of issue 11.

Each with runs of 1 model call and of 10 model calls. Figures: usage rows per second of
wall-clock time (the rows are all in the database when the clock stops).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import (
    Ledger,
    Meter,
    PostgresLedger,
    PostgresTraceStore,
    PriceTable,
    RunRecord,
    SQLiteLedger,
    SQLiteTraceStore,
    TraceStore,
)
from agenthood_mw.metering._recorder import Recorder

PRICES = PriceTable({"gpt-4o": {"input": "2.50", "output": "10.00", "cached_input": "1.25"}})
BATCH = 2000


def make_runs(rows: int, calls: int) -> list[RunRecord]:
    scopes = [MemoryScope.operator(user=f"user-{i}", tenant="bench") for i in range(50)]
    runs = []
    for i in range(rows // calls):
        meter = Meter(prices=PRICES, scope=scopes[i % 50], agent="the-developer", path="/run")
        for j in range(calls):
            meter.record(model="gpt-4o", input_tokens=1000 + j, output_tokens=100)
        runs.append(meter.finish(status=200))
    return runs


@contextmanager
def sqlite_stores() -> Iterator[Callable[[], tuple[Ledger, TraceStore]]]:
    with tempfile.TemporaryDirectory() as tmp:
        n = iter(range(1000))

        def make() -> tuple[Ledger, TraceStore]:
            path = f"{tmp}/costs-{next(n)}.db"
            return SQLiteLedger(path), SQLiteTraceStore(path)

        yield make


@contextmanager
def postgres_stores(dsn: str) -> Iterator[Callable[[], tuple[Ledger, TraceStore]]]:
    import psycopg

    schemas: list[str] = []

    def make() -> tuple[Ledger, TraceStore]:
        schema = f"bench_ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        spool = tempfile.mkdtemp(prefix="bench-ledger-spool-")
        return (
            PostgresLedger(dsn, schema=schema, spool_dir=spool),
            PostgresTraceStore(dsn, schema=schema),
        )

    try:
        yield make
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def bench_ledger(ledger: Ledger, runs: list[RunRecord]) -> float:
    start = time.perf_counter()
    for i in range(0, len(runs), BATCH):
        ledger.write_usage(runs[i : i + BATCH])
    return time.perf_counter() - start


def bench_recorder(ledger: Ledger, traces: TraceStore, runs: list[RunRecord]) -> float:
    recorder = Recorder(ledger, traces, None, None)
    start = time.perf_counter()
    for run in runs:
        recorder.submit(run)
    done = recorder.flush()
    elapsed = time.perf_counter() - start
    assert done, "flush() did not finish"
    recorder.close()
    return elapsed


def check(ledger: Ledger, runs: list[RunRecord]) -> None:
    """Every row is in: the ledger's total is the runs' total, to the nano-dollar."""
    want = sum(r.totals.cost_nanos for r in runs)
    got = sum(s.cost_nanos for s in ledger._report("user", None, None))
    assert got == want, (got, want)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="usage rows per measurement")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "AGENTHOOD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {args.rows} usage rows per measurement")
    print(f"{'database':<11}{'path':<10}{'calls/run':>10}{'seconds':>10}{'usage rows/s':>14}")
    backends: list[tuple[str, Any]] = [("SQLite", sqlite_stores()), ("PostgreSQL", None)]
    for name, stores in backends:
        if args.only and not name.lower().startswith(args.only[:4]):
            continue
        with stores if stores is not None else postgres_stores(args.pg) as make:
            for calls in (1, 10):
                runs = make_runs(args.rows, calls)
                rows = len(runs) * calls
                for what in ("ledger", "recorder"):
                    ledger, traces = make()
                    if what == "ledger":
                        seconds = bench_ledger(ledger, runs)
                    else:
                        seconds = bench_recorder(ledger, traces, runs)
                    check(ledger, runs)
                    ledger.close_sync()
                    traces.close_sync()
                    print(
                        f"{name:<11}{what:<10}{calls:>10}{seconds:>10.2f}{rows / seconds:>14,.0f}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
