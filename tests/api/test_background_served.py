"""Background runs under a real uvicorn: poll, events and resume, cancel, owner-only, the cap
with concurrent clients, refusals that create nothing; a worker killed mid-run (SIGKILL) and
restarted on the same data directory reports the run ``interrupted``; so does a shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import free_port, served

from agenthood_mw import MemoryScope
from agenthood_mw.auth import mint_token
from agenthood_mw.metering import ledger_from_url

ROOT = Path(__file__).resolve().parents[2]
SECRET = "background-secret-" + "b" * 40

APP = f"""
import asyncio
import os

from agenthood_mw.api import AgenthoodAPI, OfflineProvider, RunContext
from agenthood_mw.auth import AuthMiddleware

DATA = os.environ["BG_DATA"]


class Sleeper:
    name = "sleeper"
    description = "calls the model once, then sleeps as many seconds as its task says"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("think")
        completion = await ctx.complete([{{"role": "user", "content": task}}])
        await asyncio.sleep(float(task))
        return completion.text


app = AgenthoodAPI(
    agents=[Sleeper()],
    provider=OfflineProvider(),
    memory=f"sqlite:///{{DATA}}/memory.db",
    ledger=f"sqlite:///{{DATA}}/costs.db",
    max_runs_per_user=2,
    run_lease=1.0,
)
app.add_middleware(
    AuthMiddleware,
    strategy="jwt",
    secret={SECRET!r},
    audience="agenthood-api",
    exempt_paths=["/health"],
)
"""


def bearer(user: str) -> dict[str, str]:
    return {"authorization": "Bearer " + mint_token(secret=SECRET, user_id=user)}


def command(port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "uvicorn", "bgapp:app", "--port", str(port), "--log-level", "warning"),
    ]


def environment(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "bgapp.py").write_text(APP)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTHOOD_")},
        "BG_DATA": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
    }


def wait_status(c: httpx.Client, run_id: str, user: str, *states: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        body = c.get(f"/runs/{run_id}", headers=bearer(user)).json()
        if body["status"] in states or time.monotonic() > deadline:
            assert body["status"] in states, body
            return body
        time.sleep(0.05)


def submit(c: httpx.Client, task: str, user: str = "alice") -> str:
    r = c.post("/agents/sleeper/runs", json={"task": task}, headers=bearer(user))
    assert r.status_code == 202, r.text
    return str(r.json()["runId"])


def sse(text: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(x.split(": ", 1) for x in block.splitlines() if x and x[0] != ":")
        if lines:
            out.append((int(lines["id"]), json.loads(lines["data"])))
    return out


def ledger_runs(tmp_path: Path, user: str) -> list[str]:
    """The run ids of ``user``'s usage in the server's ledger (once the writer wrote them)."""
    ledger = ledger_from_url(f"sqlite:///{tmp_path}/costs.db")
    try:
        return [u.run_id for u in asyncio.run(ledger.usage(MemoryScope.operator(user=user)))]
    finally:
        ledger.close_sync()


def wait_ledger(tmp_path: Path, user: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        runs = ledger_runs(tmp_path, user)
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


@pytest.mark.slow
def test_background_runs_over_real_http(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = free_port()
    with (
        served(command(port), port=port, env=env, cwd=tmp_path, what="uvicorn bgapp") as (url, _),
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        # 202 at once, then poll to the seed's JSON
        started = time.monotonic()
        quick = submit(c, "1.5")
        assert time.monotonic() - started < 1.5  # answered before the run is over
        done = wait_status(c, quick, "alice", "completed")
        assert done["result"]["runId"] == quick and done["result"]["userId"] == "alice"
        assert done["result"]["stopReason"] == "completed"
        # events: a client that leaves after the first event resumes with Last-Event-ID
        slow = submit(c, "1.0")
        wait_status(c, slow, "alice", "running")
        with c.stream("GET", f"/runs/{slow}/events", headers=bearer("alice")) as s:
            first = next(s.iter_text())
        [(first_id, first_data)] = sse(first)
        assert first_data["status"] == "running"
        rest = c.get(
            f"/runs/{slow}/events", headers={**bearer("alice"), "last-event-id": str(first_id)}
        )
        assert [(i, d["status"]) for i, d in sse(rest.text)] == [(first_id + 1, "completed")]
        # owner-only
        assert c.get(f"/runs/{slow}", headers=bearer("bob")).status_code == 404
        assert c.post(f"/runs/{slow}/cancel", headers=bearer("bob")).status_code == 404
        # cancel: stopped, and charged for the model call it made
        long = submit(c, "60")
        wait_status(c, long, "alice", "running")
        time.sleep(0.1)
        stopped = c.post(f"/runs/{long}/cancel", headers=bearer("alice")).json()
        assert stopped["status"] == "stopped" and stopped["stopReason"] == "cancelled"
        assert stopped["result"]["cost"]["inputTokens"] > 0
        assert sorted(wait_ledger(tmp_path, "alice", 3)) == sorted([quick, slow, long])
        # the cap, with concurrent clients: two in flight per user
        asyncio.run(_cap(url))
        # refused requests create nothing
        assert (
            c.post("/agents/nope/runs", json={"task": "1"}, headers=bearer("carol")).status_code
            == 404
        )
        assert (
            c.post("/agents/sleeper/runs", json={"task": ""}, headers=bearer("carol")).status_code
            == 422
        )
        assert c.post("/agents/sleeper/runs", json={"task": "1"}).status_code == 401
    assert ledger_runs(tmp_path, "carol") == []


async def _cap(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        answers = await asyncio.gather(
            *(
                c.post("/agents/sleeper/runs", json={"task": "1.5"}, headers=bearer("dave"))
                for _ in range(6)
            )
        )
        assert sorted(r.status_code for r in answers) == [202, 202, 429, 429, 429, 429]
        for r in answers:
            if r.status_code == 202:
                await c.post(f"/runs/{r.json()['runId']}/cancel", headers=bearer("dave"))


@pytest.mark.slow
def test_a_killed_worker_leaves_its_run_interrupted_after_restart(tmp_path: Path) -> None:
    env = environment(tmp_path)
    port = free_port()
    with served(command(port), port=port, env=env, cwd=tmp_path, what="uvicorn bgapp") as (
        url,
        process,
    ):
        with httpx.Client(base_url=url, timeout=30) as c:
            run_id = submit(c, "60")
            wait_status(c, run_id, "alice", "running")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    port = free_port()
    with (
        served(command(port), port=port, env=env, cwd=tmp_path, what="uvicorn bgapp") as (url, _),
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        # the dead worker's lease (1 s) runs out, the new worker marks the run interrupted
        record = wait_status(c, run_id, "alice", "interrupted")
        assert record["stopReason"] == "interrupted" and record["result"] is None
        events = sse(c.get(f"/runs/{run_id}/events", headers=bearer("alice")).text)
        assert [d["status"] for _, d in events] == ["interrupted"]
        assert c.get(f"/runs/{run_id}", headers=bearer("bob")).status_code == 404
        # a worker stopped gracefully (SIGTERM) records its runs interrupted itself
        graceful = submit(c, "60")
        wait_status(c, graceful, "alice", "running")
    port = free_port()
    with (
        served(command(port), port=port, env=env, cwd=tmp_path, what="uvicorn bgapp") as (url, _),
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        record = c.get(f"/runs/{graceful}", headers=bearer("alice")).json()
        assert record["status"] == "interrupted"
        assert record["result"]["runId"] == graceful  # what it used, charged
    assert graceful in wait_ledger(tmp_path, "alice", 1)
