"""End to end: ``agenthood serve`` as a real uvicorn process on 127.0.0.1, real HTTP requests.

Two users write and read memory and cannot see each other's; the 26th request of a user in a
minute gets 429; each user's spend shows in ``agenthood costs``; the seed's ``curl`` (with a
token from ``agenthood token``) returns the seed's JSON shape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from served import free_port, served

pytestmark = pytest.mark.slow

SECRET = "e2e-secret-" + "z" * 40
SEED_TASK = "refactor the auth middleware to use async/await"


def _agenthood() -> list[str]:
    script = Path(sys.executable).with_name("agenthood")
    return [str(script)] if script.exists() else [sys.executable, "-m", "agenthood_mw.cli"]


@dataclass
class Server:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_agenthood(), *argv], env=self.env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("e2e") / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTHOOD_")},
        "AGENTHOOD_DATA_DIR": str(data),
        "AGENTHOOD_JWT_SECRET": SECRET,
    }
    port = free_port()
    command = [*_agenthood(), "serve", "--port", str(port), "--log-level", "warning"]
    with served(command, port=port, env=env, what="agenthood serve") as (url, process):
        yield Server(url, env, process)


def _token(server: Server, user: str) -> str:
    result = server.cli("token", "--user", user)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _run(client: httpx.Client, token: str, agent: str, task: str) -> httpx.Response:
    return client.post(
        f"/agents/{agent}/run",
        json={"task": task},
        headers={"authorization": f"Bearer {token}"},
    )


def test_two_users_limits_and_costs(server: Server) -> None:
    alice, bob = _token(server, "usr_alice"), _token(server, "usr_bob")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _run(client, alice, "the-scribe", "remember my editor: vim").status_code == 200
        assert _run(client, bob, "the-scribe", "remember my editor: emacs").status_code == 200
        a = _run(client, alice, "the-scribe", "recall my editor").json()
        b = _run(client, bob, "the-scribe", "recall my editor").json()
        assert a["output"] == "From your notes: my editor = vim" and a["memoryScope"] == "usr_alice"
        assert b["output"] == "From your notes: my editor = emacs" and b["memoryScope"] == "usr_bob"
        listing = _run(client, bob, "the-scribe", "list").json()["output"]
        assert "emacs" in listing and "vim" not in listing
        review = _run(client, alice, "the-reviewer", "anything odd?").json()["output"]
        assert "emacs" not in review and "vim" in review
        for token in (alice, bob):
            assert _run(client, token, "the-developer", "fix the login bug").status_code == 200

        # a third user: 20/min sustained + a burst of 5 = 25 admitted, the 26th is refused.
        # Sent concurrently so that they all fall well within one refill interval (3 s).
        carol = _token(server, "usr_carol")
        with ThreadPoolExecutor(max_workers=13) as pool:
            statuses = sorted(
                pool.map(lambda _: _run(client, carol, "the-scribe", "list").status_code, range(26))
            )
        assert statuses == [200] * 25 + [429]
        refused = _run(client, carol, "the-scribe", "list")
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # the others are not affected by carol's limit
        assert _run(client, alice, "the-scribe", "list").status_code == 200

    deadline = time.monotonic() + 15
    while True:  # the ledger writer is asynchronous: wait until both users are in
        costs = server.cli("costs")
        assert costs.returncode == 0, costs.stderr
        rows = {line.split()[0]: line for line in costs.stdout.splitlines()[2:]}
        if {"usr_alice", "usr_bob"} <= set(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "usr_alice" in rows and "usr_bob" in rows
    assert "$0.0" in rows["usr_alice"] and "$0.0" in rows["usr_bob"]
    assert "usr_carol" not in rows  # scribe "list" makes no model call: no spend
    alice_costs = server.cli("costs", "--user", "usr_alice")
    assert "the-developer" in alice_costs.stdout


def test_the_seed_curl(server: Server) -> None:
    jwt = _token(server, "usr_8f3a")
    url = f"{server.url}/agents/the-developer/run"
    body = json.dumps({"task": SEED_TASK})
    curl = shutil.which("curl")
    if curl is not None:
        result = subprocess.run(
            [
                curl,
                "-sS",
                "-X",
                "POST",
                url,
                "-H",
                f"Authorization: Bearer {jwt}",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        text = result.stdout
    else:  # the same request without curl
        text = httpx.post(
            url,
            content=body,
            headers={"Authorization": f"Bearer {jwt}", "Content-Type": "application/json"},
            timeout=30,
        ).text
    answer = json.loads(text)
    assert list(answer) == [
        "agent",
        "userId",
        "output",
        "steps",
        "cost",
        "memoryScope",
        "runId",
        "stopReason",
    ]
    assert answer["agent"] == "the-developer"
    assert answer["userId"] == "usr_8f3a"
    assert answer["memoryScope"] == "usr_8f3a"
    assert isinstance(answer["output"], str) and answer["output"]
    assert isinstance(answer["steps"], int) and answer["steps"] > 0
    assert list(answer["cost"]) == ["inputTokens", "outputTokens", "totalCost"]
    assert answer["cost"]["inputTokens"] > 0 and answer["cost"]["totalCost"] > 0
    assert answer["stopReason"] == "completed"
