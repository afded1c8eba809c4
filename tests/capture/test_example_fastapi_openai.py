"""``examples/fastapi_openai.py`` served by uvicorn in a subprocess, its OpenAI calls going to
the fake provider: each user's spend in ``agenthood costs`` is exactly what the provider
reported for them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from capture_kit import expected_nanos
from provider_server import Provider
from served import free_port, served

from agenthood_mw.auth import mint_token

pytest.importorskip("openai")
pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]
SECRET = "capture-example-secret-" + "x" * 32
pytestmark = pytest.mark.timeout(90)


def test_fastapi_openai_example_is_metered_per_user(fresh: Provider, tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'costs.db'}"
    port = free_port()
    env = {
        **os.environ,
        "AGENTHOOD_JWT_SECRET": SECRET,
        "LEDGER_URL": ledger,
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": fresh.url + "/v1",
    }
    command = [sys.executable, "examples/fastapi_openai.py", "--port", str(port)]
    with served(command, port=port, env=env, cwd=ROOT, what="fastapi_openai") as (base, _p):
        for i in range(9):
            user = ("alice", "bob", "carol")[i % 3]
            token = mint_token(secret=SECRET, user_id=user, audience="agenthood-api")
            r = httpx.post(
                base + "/ask",
                json={"question": "hi", "max_tokens": 3 + i},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            assert r.json()["answer"] == "x " * (3 + i)
        anonymous = httpx.post(base + "/ask", json={"question": "hi"}, timeout=30)
        assert anonymous.status_code == 401
    assert len(fresh.hits()) == 9  # the refused request never reached the provider
    # What the provider reported, priced as the shipped snapshot prices gpt-4o-mini.
    per_user: dict[int, list[int]] = defaultdict(list)
    for i, hit in enumerate(fresh.hits()):
        per_user[i % 3].append(expected_nanos("gpt-4o-mini", [hit]))
    report = subprocess.run(
        [sys.executable, "-m", "agenthood_mw.cli", "costs", "--ledger", ledger],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    for k, user in enumerate(("alice", "bob", "carol")):
        line = next(line for line in report.splitlines() if user in line)
        dollars = Decimal(sum(per_user[k])) / 10**9
        assert f"${format(dollars.normalize(), 'f')}" in line, (line, dollars)
