"""The examples in ``examples/`` run: as scripts (token printing, a live uvicorn server) and
in-process through each framework's test client."""

# ruff: noqa: S310 - urlopen is only used on http://127.0.0.1 URLs built here

from __future__ import annotations

import importlib.util
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from served import free_port, served
from starlette.testclient import TestClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_token(name: str, *scopes: str) -> str:
    args = [sys.executable, str(EXAMPLES / f"{name}.py"), "--token", "--user", "usr_cli"]
    for scope in scopes:
        args += ["--scope", scope]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def client_for(name: str, module: ModuleType) -> Any:
    return module.app.test_client() if name == "flask_app" else TestClient(module.app)


def status(resp: Any) -> int:
    return int(resp.status_code)


def body(resp: Any) -> Any:
    return resp.json() if callable(resp.json) else resp.json


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app", "flask_app"])
def test_example_in_process(name: str) -> None:
    module = load(name)
    client = client_for(name, module)
    runner = script_token(name, "agents:run")
    reader = module.mint_token(
        secret=module.SECRET, user_id="usr_reader", audience=module.AUDIENCE, scopes=["memory:read"]
    )
    assert status(client.get("/health")) == 200
    assert status(client.get("/me")) == 401
    me = client.get("/me", headers={"Authorization": f"Bearer {runner}"})
    assert status(me) == 200 and body(me)["userId"] == "usr_cli"
    task = {"task": "plan the release"}
    ok = client.post("/agents/dev/run", headers={"Authorization": f"Bearer {runner}"}, json=task)
    assert status(ok) == 200 and body(ok)["userId"] == "usr_cli"
    # the run is metered (header and body agree) and bound to the caller's memory scope
    assert body(ok)["memoryScope"] == "usr_cli"
    assert body(ok)["cost"]["inputTokens"] > 0 and body(ok)["cost"]["totalCost"] > 0
    assert Decimal(ok.headers["X-Agenthood-Cost"]) > 0
    no_task = client.post("/agents/dev/run", headers={"Authorization": f"Bearer {runner}"})
    assert status(no_task) == 422
    denied = client.post(
        "/agents/dev/run", headers={"Authorization": f"Bearer {reader}"}, json=task
    )
    assert status(denied) == 403


def test_fastapi_example_accepts_api_keys() -> None:
    module = load("fastapi_app")
    from agenthood_mw.auth import create_api_key

    created = create_api_key(module.key_store, user_id="svc", scopes=["agents:run"])
    client = TestClient(module.app)
    r = client.post(
        "/agents/dev/run", headers={"X-API-Key": created.secret}, json={"task": "review"}
    )
    assert r.status_code == 200 and r.json()["userId"] == "svc"


def test_starlette_example_serves_over_http() -> None:
    port = free_port()
    command = [sys.executable, str(EXAMPLES / "starlette_app.py"), "--port", str(port)]
    with served(command, port=port, what="examples/starlette_app.py") as (base, _proc):
        token = script_token("starlette_app")
        req = urllib.request.Request(base + "/me", headers={"Authorization": f"Bearer {token}"})
        assert b"usr_cli" in urllib.request.urlopen(req, timeout=5).read()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/me", timeout=5)
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"] == 'Bearer realm="agenthood"'
