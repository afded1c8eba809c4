"""``examples/agent_api.py`` and ``examples/multiworker_redis.py``, each run for real."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import httpx
import pytest
from served import free_port, served

from agenthood_mw.auth import mint_token

if TYPE_CHECKING:
    from .conftest import LLMServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "example-secret-" + "e" * 40
SERVE = [sys.executable, "-m", "agenthood_mw.cli", "serve"]


def load_example(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bearer(user: str) -> dict[str, str]:
    return {"authorization": "Bearer " + mint_token(secret=SECRET, user_id=user)}


async def test_agent_api_example(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example("agent_api", monkeypatch)
    app = example.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

        async def run(user: str, task: str) -> str:
            r = await c.post("/agents/todo/run", json={"task": task}, headers=bearer(user))
            assert r.status_code == 200, r.text
            output: str = r.json()["output"]
            return output

        assert await run("usr_a", "add ship the release notes") == "Added: ship the release notes"
        assert await run("usr_a", "add fix the flaky test") == "Added: fix the flaky test"
        assert await run("usr_b", "list") == "Your list is empty."
        listing = await run("usr_a", "list")
        assert "ship the release notes" in listing and "fix the flaky test" in listing
        advice = await run("usr_a", "what next?")
        assert "[offline]" in advice
        assert await run("usr_a", "done fix the flaky test") == "Done: fix the flaky test"
        assert "flaky" not in await run("usr_a", "list")
        anonymous = await c.post("/agents/todo/run", json={"task": "list"})
        assert anonymous.status_code == 401
    await app.aclose()


async def test_agent_api_example_fails_over(
    monkeypatch: pytest.MonkeyPatch, llm_server: Callable[[str], LLMServer]
) -> None:
    primary, secondary = llm_server("primary"), llm_server("secondary")
    primary.mode = 502
    example = load_example(
        "agent_api",
        monkeypatch,
        LLM_PRIMARY_URL=primary.url,
        LLM_PRIMARY_MODEL="gpt-4o-mini",
        LLM_SECONDARY_URL=secondary.url,
        LLM_SECONDARY_MODEL="gpt-4o-mini",
    )
    app = example.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        await c.post("/agents/todo/run", json={"task": "add a"}, headers=bearer("u"))
        r = await c.post("/agents/todo/run", json={"task": "what next?"}, headers=bearer("u"))
    assert r.status_code == 200
    assert "secondary says:" in r.json()["output"]
    # gpt-4o-mini: 26 input tokens at 0.15 $/M + 5 cached at 0.075 $/M + 9 output at 0.60 $/M
    assert r.json()["cost"] == {"inputTokens": 31, "outputTokens": 9, "totalCost": 0.000009675}
    assert '"totalCost":0.000009675}' in r.text
    assert primary.hits == 1 and secondary.hits == 1
    await app.aclose()


def test_agent_api_example_needs_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", "")
    spec = importlib.util.spec_from_file_location(
        "example_nosecret", ROOT / "examples" / "agent_api.py"
    )
    assert spec is not None and spec.loader is not None
    with pytest.raises(ValueError, match="AGENTHOOD_JWT_SECRET"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.fixture
def multiworker(
    redis_url: str, redis_prefix: str, postgres_dsn: str, postgres_schema: str
) -> Iterator[tuple[str, dict[str, str]]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTHOOD_")},
        "AGENTHOOD_JWT_SECRET": SECRET,
        "AGENTHOOD_REDIS_URL": redis_url,
        "AGENTHOOD_REDIS_PREFIX": redis_prefix,
        "AGENTHOOD_POSTGRES_DSN": postgres_dsn,
        "AGENTHOOD_PG_SCHEMA": postgres_schema,
    }
    port = free_port()
    command = [
        *(sys.executable, "-m", "agenthood_mw.cli", "serve"),
        *("examples.multiworker_redis:app", "--workers", "2", "--port", str(port)),
    ]
    with served(
        command, port=port, env=env, cwd=ROOT, timeout=45, what="the multiworker example"
    ) as (url, _process):
        yield url, env


@pytest.mark.slow
def test_multiworker_example_shares_redis_and_postgres(
    multiworker: tuple[str, dict[str, str]], redis_url: str, redis_prefix: str
) -> None:
    import redis

    url, env = multiworker
    with httpx.Client(base_url=url, timeout=30) as client:
        for user, colour in (("usr_a", "red"), ("usr_b", "teal")):
            r = client.post(
                "/agents/the-scribe/run",
                json={"task": f"remember colour: {colour}"},
                headers=bearer(user),
            )
            assert r.status_code == 200, r.text
        for user, colour, other in (("usr_a", "red", "teal"), ("usr_b", "teal", "red")):
            out = client.post(
                "/agents/the-scribe/run", json={"task": "list"}, headers=bearer(user)
            ).json()["output"]
            assert colour in out and other not in out
        developer = client.post(
            "/agents/the-developer/run", json={"task": "tidy up"}, headers=bearer("usr_a")
        )
        assert developer.status_code == 200
        # one limit for the whole service: 25 admitted across both workers, then 429 (sent
        # concurrently, so that both workers serve some and all fall within one refill interval)

        def hit(_: int) -> int:
            return client.post(
                "/agents/the-scribe/run", json={"task": "list"}, headers=bearer("usr_c")
            ).status_code

        with ThreadPoolExecutor(max_workers=13) as pool:
            statuses = sorted(pool.map(hit, range(26)))
    assert statuses == [200] * 25 + [429]
    keys = redis.Redis.from_url(redis_url).keys(redis_prefix + "*")
    assert keys, "the rate limit state is in Redis"
    ledger = f"{env['AGENTHOOD_POSTGRES_DSN']}?schema={env['AGENTHOOD_PG_SCHEMA']}"
    deadline = time.monotonic() + 15
    while True:
        costs = subprocess.run(
            [sys.executable, "-m", "agenthood_mw.cli", "costs", "--ledger", ledger],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert costs.returncode == 0, costs.stderr
        if "usr_a" in costs.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "usr_a" in costs.stdout


@pytest.mark.slow
def test_agent_api_example_under_agenthood_serve() -> None:
    """``agenthood serve examples.agent_api:app`` (one worker: the imported app object)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AGENTHOOD_", "LLM_"))},
        "AGENTHOOD_JWT_SECRET": SECRET,
    }
    port = free_port()
    command = [*SERVE, "examples.agent_api:app", "--port", str(port), "--log-level", "warning"]
    with served(command, port=port, env=env, cwd=ROOT, what="examples.agent_api") as (url, _p):
        with httpx.Client(base_url=url, timeout=30) as client:
            added = client.post("/agents/todo/run", json={"task": "add x"}, headers=bearer("u"))
            listing = client.post("/agents/todo/run", json={"task": "list"}, headers=bearer("u"))
            other = client.post("/agents/todo/run", json={"task": "list"}, headers=bearer("v"))
            agents = client.get("/agents", headers=bearer("u")).json()["agents"]
        assert added.json()["output"] == "Added: x"
        assert listing.json()["output"] == "- x"
        assert other.json()["output"] == "Your list is empty."
        assert agents == [{"name": "todo", "description": agents[0]["description"]}]


def test_agent_api_example_without_secret_fails_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOOD_")}
    result = subprocess.run(
        [sys.executable, "-m", "agenthood_mw.cli", "serve", "examples.agent_api:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid configuration in examples.agent_api: AGENTHOOD_JWT_SECRET is not set "
        "(the HS256 secret of your tokens)"
    ]
