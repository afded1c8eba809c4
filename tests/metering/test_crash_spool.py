"""Nothing acknowledged is lost: a real uvicorn worker killed with SIGKILL under load from
concurrent clients, restarted on the same files: every run whose response a client received
(with its ``X-Agenthood-Run-Id``) is in the ledger, exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import free_port, served

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import ledger_from_url, trace_store_from_url

HERE = Path(__file__).parent
CLIENTS = 8
LOAD_SECONDS = 2.5
CALLS = 2  # usage rows per run
RUN_NANOS = 2 * 3_500_000  # two gpt-4o calls of 1000 in / 100 out


def _serve(ledger: str) -> Any:
    port = free_port()
    env = {**os.environ, "CRASH_LEDGER": ledger}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE.parent.parent), env.get("PYTHONPATH", "")) if p
    )
    command = [
        *(sys.executable, "-m", "uvicorn", "crash_app:app", "--app-dir", str(HERE)),
        *("--port", str(port), "--log-level", "warning", "--no-access-log"),
    ]
    return served(command, port=port, env=env, what="the crash-test worker")


def _load(url: str, received: dict[str, list[str]], stop: threading.Event, user: str) -> None:
    """POST runs until the server dies; keep the run id of every complete 200 response."""
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            try:
                r = client.post(f"/agents/dev/run?calls={CALLS}", headers={"x-user": user})
            except httpx.HTTPError:
                return  # the worker is gone: this response never completed
            if r.status_code == 200 and r.text == "ok":
                received[user].append(r.headers["x-agenthood-run-id"])


def _kill_under_load(ledger: str) -> dict[str, list[str]]:
    received: dict[str, list[str]] = {f"client-{i}": [] for i in range(CLIENTS)}
    stop = threading.Event()
    with _serve(ledger) as (url, process):
        threads = [
            threading.Thread(target=_load, args=(url, received, stop, user)) for user in received
        ]
        for t in threads:
            t.start()
        time.sleep(LOAD_SECONDS)
        os.kill(process.pid, signal.SIGKILL)  # mid-load: runs are still queued for the writer
        process.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return received


async def _check(ledger_url: str, received: dict[str, list[str]]) -> None:
    # Read with spooling off: this reader must replay nothing itself.
    sep = "&" if "?" in ledger_url else "?"
    ledger = ledger_from_url(f"{ledger_url}{sep}spool_dir=off")
    traces = trace_store_from_url(ledger_url.split("&spool_dir=")[0].split("?spool_dir=")[0])
    try:
        total_received = 0
        for user, run_ids in received.items():
            scope = MemoryScope.operator(user=user)
            events = await ledger.usage(scope, limit=1_000_000)
            per_run = Counter(e.run_id for e in events)
            missing = [r for r in run_ids if per_run.get(r) != CALLS]
            assert not missing, f"{len(missing)} acknowledged runs of {user} missing"
            assert len(set(run_ids)) == len(run_ids)
            # 0 doubled: every run in the ledger holds exactly its own usage rows, once.
            assert set(per_run.values()) <= {CALLS}
            assert (await ledger.spend(scope)) * 10**9 == RUN_NANOS * len(per_run)
            for run_id in run_ids[-3:]:
                trace = await traces.get(scope, run_id)
                assert trace is not None and trace["totals"]["modelCalls"] == CALLS
            total_received += len(run_ids)
        assert total_received > 100, "the load never got going"
    finally:
        await ledger.close()
        await traces.close()


def _crash_and_restart(ledger_url: str, spool: Path) -> None:
    received = _kill_under_load(ledger_url)
    leftover = list(spool.glob("*.spool"))
    assert leftover, "the killed worker left no spool"
    with _serve(ledger_url):
        pass  # the restarted worker replays the spool at start; stopping it flushes
    assert not list(spool.glob("*.spool"))
    asyncio.run(_check(ledger_url, received))


@pytest.mark.slow
def test_sqlite_worker_killed_under_load_loses_no_acknowledged_run(tmp_path: Path) -> None:
    _crash_and_restart(f"sqlite:///{tmp_path}/costs.db", tmp_path / "costs.db.spool")


@pytest.mark.slow
def test_postgres_worker_killed_under_load_loses_no_acknowledged_run(
    tmp_path: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    sep = "&" if "?" in postgres_dsn else "?"
    spool = tmp_path / "spool"
    _crash_and_restart(f"{postgres_dsn}{sep}schema={postgres_schema}&spool_dir={spool}", spool)
