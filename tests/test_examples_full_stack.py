"""The framework examples show the whole product, served by real servers over real HTTP.

``examples/starlette_app.py`` and ``examples/fastapi_app.py`` run under uvicorn (their own
``main``), ``examples/flask_app.py`` under waitress, each in a subprocess on a free 127.0.0.1
port. The same scenario runs against each: two users write and read memory and cannot see each
other's, a run is metered and its cost is in the user's ledger, the 26th request of a burst is
429, and refused requests (401, 429) are never metered (auth, then rate limit, then metering).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from served import free_port, served

from agenthood_mw.auth import mint_token

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SECRET = "full-stack-example-secret-" + "x" * 32
AUDIENCE = "agenthood-api"
RUN_ID = "X-Agenthood-Run-Id"

pytestmark = pytest.mark.timeout(90)


def _command(name: str, port: int) -> list[str]:
    if name == "flask_app":
        listen = f"--listen=127.0.0.1:{port}"
        return [sys.executable, "-m", "waitress", listen, "--threads=4", "examples.flask_app:app"]
    return [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)]


@pytest.fixture(params=["starlette_app", "fastapi_app", "flask_app"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(example name, base URL) of the example served in a subprocess."""
    name: str = request.param
    port = free_port()
    env = {
        **os.environ,
        "AGENTHOOD_JWT_SECRET": SECRET,
        "MEMORY_URL": "memory://",
        "LEDGER_URL": "memory://",
    }
    with served(_command(name, port), port=port, env=env, cwd=ROOT, what=name) as (base, _proc):
        yield name, base


def bearer(user: str, *scopes: str) -> dict[str, str]:
    token = mint_token(secret=SECRET, user_id=user, audience=AUDIENCE, scopes=scopes)
    return {"Authorization": f"Bearer {token}"}


def spend(http: httpx.Client, headers: dict[str, str], *, at_least: Decimal) -> Decimal:
    """The user's ledger total; a WSGI run is settled when the server closes the response, a
    moment after the client has it, so wait (bounded) for it to reach ``at_least``."""
    for _ in range(20):
        r = http.get("/costs", headers=headers)
        assert r.status_code == 200
        total = Decimal(r.json()["totalCost"])
        if total >= at_least:
            return total
        time.sleep(0.05)
    return total


def test_example_full_stack_over_http(server: tuple[str, str]) -> None:
    name, base = server
    alice = bearer("usr_alice", "agents:run")
    bob = bearer("usr_bob", "agents:run")
    with httpx.Client(base_url=base, timeout=10) as http:
        # auth is outermost: no credential, no run opened (never metered)
        anonymous = http.get("/memory/colour")
        assert anonymous.status_code == 401 and RUN_ID not in anonymous.headers

        # each user writes and reads their own memory
        assert http.put("/memory/colour", json="blue", headers=alice).status_code == 200
        assert http.put("/memory/colour", json="green", headers=bob).status_code == 200
        assert (
            http.put("/memory/diary/today", json={"mood": "ok"}, headers=alice).status_code == 200
        )
        assert http.get("/memory/colour", headers=alice).json()["value"] == "blue"
        assert http.get("/memory/colour", headers=bob).json()["value"] == "green"
        # ... and cannot see the other's
        assert http.get("/memory/diary/today", headers=bob).status_code == 404
        assert http.get("/memory", headers=bob).json()["keys"] == ["colour"]
        assert sorted(http.get("/memory", headers=alice).json()["keys"]) == [
            "colour",
            "diary/today",
        ]

        # a run is metered: the cost is in the header, the body and the user's ledger
        run = http.post("/agents/dev/run", json={"task": "plan the release"}, headers=alice)
        assert run.status_code == 200, run.text
        data = run.json()
        assert data["userId"] == "usr_alice" and data["memoryScope"] == "usr_alice"
        cost = Decimal(run.headers["X-Agenthood-Cost"])
        assert cost > 0 and data["cost"]["inputTokens"] > 0
        assert Decimal(str(data["cost"]["totalCost"])) == cost
        assert spend(http, alice, at_least=cost) == cost
        assert spend(http, bob, at_least=Decimal(0)) == 0  # bob ran nothing
        # bad input: nothing is run
        assert http.post("/agents/dev/run", json={}, headers=bob).status_code == 422
        assert http.post("/agents/nope/run", json={"task": "x"}, headers=bob).status_code == 404
        assert spend(http, bob, at_least=Decimal(0)) == 0

        # the rate limit: 20/min, burst 5, per user; the 26th request of a burst is refused
        carol = bearer("usr_carol")
        statuses = [http.get("/me", headers=carol).status_code for _ in range(25)]
        assert statuses == [200] * 25
        refused = http.get("/me", headers=carol)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        assert RUN_ID not in refused.headers  # refused before the meter: never charged
        # per user: alice, who made fewer than 25 requests, is still served
        assert http.get("/me", headers=alice).status_code == 200
    if name == "fastapi_app":
        check_fastapi_openapi(base)


def check_fastapi_openapi(base: str) -> None:
    """FastAPI: the identity is a dependency and the security schemes are in OpenAPI."""
    doc = httpx.get(base + "/openapi.json", timeout=10).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A JWT (or an ah_ API key)",
    }
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    run = doc["paths"]["/agents/{name}/run"]["post"]
    assert {"HTTPBearer": []} in run["security"]
    assert "security" not in doc["paths"]["/health"]["get"]
    # the dependency enforces the scope: a token without agents:run is refused
    reader = bearer("usr_reader")
    denied = httpx.post(base + "/agents/dev/run", json={"task": "x"}, headers=reader, timeout=10)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["WWW-Authenticate"]
