"""AgenthoodAPI's construction errors name the option; one 401 type with or without auth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agenthood_mw.api import AgenthoodAPI, OfflineProvider
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import AuthMiddleware

SECRET = "config-errors-secret-" + "c" * 40


def build(**options: Any) -> AgenthoodAPI:
    return AgenthoodAPI(agents=demo_agents(), provider=OfflineProvider(), **options)


def test_memory_in_a_missing_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent_dir' / 'm.db'}"
    with pytest.raises(ValueError, match=r"^memory: path: directory .* does not exist"):
        build(memory=url)
    with pytest.raises(ValueError, match=r"^memory\['backend'\]: path: directory"):
        build(memory={"isolation": "per-user", "backend": url})


def test_unsupported_memory_url_names_memory() -> None:
    with pytest.raises(ValueError, match=r"^memory: url: 'mysql://x'"):
        build(memory="mysql://x")
    with pytest.raises(ValueError, match=r"^memory: url: .*notaport"):
        build(memory="redis://127.0.0.1:notaport/0")


def test_ledger_and_traces_errors_name_their_option(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent_dir"
    with pytest.raises(ValueError, match=r"^ledger: path: directory"):
        build(ledger=f"sqlite:///{missing / 'costs.db'}")
    with pytest.raises(ValueError, match=r"^traces: path: directory"):
        build(traces=f"sqlite:///{missing / 'traces.db'}")
    with pytest.raises(ValueError, match=r"^traces: unsupported URL"):
        build(traces="mysql://x")


def test_malformed_postgres_ledger_fails_fast() -> None:
    pytest.importorskip("psycopg_pool")
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"^ledger: dsn: invalid port 'notaport'"):
        build(ledger="postgresql://u@127.0.0.1:notaport/db")
    assert time.monotonic() - started < 2


def test_unknown_meter_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"^meter_options: unknown option 'budgetz'"):
        build(meter_options={"budgetz": []})
    with pytest.raises(ValueError, match=r"^meter_options: \['agents', 'ledger'\] are set"):
        build(meter_options={"ledger": "memory://", "agents": ["x"]})
    with pytest.raises(TypeError, match=r"^meter_options: "):
        build(meter_options=[("budgets", ())])
    api = build(meter_options={"cost_header": False})  # a real option is passed through
    assert api.meter is not None


async def test_missing_credential_is_unauthorized_with_and_without_auth() -> None:
    bare = build()
    guarded = build()
    guarded.add_middleware(AuthMiddleware, secret=SECRET)
    types = []
    for api in (bare, guarded):
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/agents/the-developer/run", json={"task": "hi"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        types.append(r.json()["error"]["type"])
        await api.aclose()
    assert types == ["unauthorized", "unauthorized"]
