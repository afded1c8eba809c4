"""``Metering``: the handle a user keeps when a framework builds the middleware (issue 11 #15),
its begin/end pair, its options validated once, and ``flush(timeout)`` saying whether it finished.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthood_mw import Identity, MemoryScope, current_meter
from agenthood_mw.metering import (
    Budget,
    CostMeterMiddleware,
    Meter,
    Metering,
    MeteringSettings,
    PriceTable,
    RunRecord,
    SQLiteLedger,
)
from agenthood_mw.wsgi import CostMeterMiddleware as WSGICostMeterMiddleware

from .conftest import PRICES, _with_identity

ALICE = MemoryScope.operator(user="alice")


async def run_route(request: Request) -> JSONResponse:
    cost = current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
    return JSONResponse({"cost": str(cost)})


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/agents/{name}/run", run_route, methods=["POST"])])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post("/agents/{name}/run")
    async def run(name: str) -> dict[str, str]:
        cost = current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
        return {"cost": str(cost)}

    return app


@pytest.mark.parametrize("make_app", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])
async def test_add_middleware_with_a_metering_handle(make_app: Any, tmp_path: Any) -> None:
    metering = Metering(
        prices=PriceTable(PRICES), ledger=f"sqlite:///{tmp_path}/costs.db", on_alert=None
    )
    app = make_app()
    # Starlette's way: the framework builds the middleware itself, lazily, on the first request.
    app.add_middleware(CostMeterMiddleware, metering=metering)
    transport = httpx.ASGITransport(app=_with_identity(app))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            runs = []
            for _ in range(3):
                r = await client.post("/agents/scribe/run", headers={"x-test-user": "alice"})
                assert r.status_code == 200
                runs.append(r.headers["x-agenthood-run-id"])
        assert await metering.aflush(timeout=10) is True
        # 1000 * 0.15e-6 + 100 * 0.6e-6 = 0.00021 per request
        assert await metering.ledger.spend(ALICE) == Decimal("0.00063")
        traces = await metering.traces.list(ALICE)
        assert sorted(t["runId"] for t in traces) == sorted(runs)
        assert {t["agent"] for t in traces} == {"scribe"}
    finally:
        await metering.aclose()


def test_wsgi_shell_takes_the_same_handle() -> None:
    metering = Metering(prices=PriceTable(PRICES), on_alert=None)

    def app(environ: Any, start_response: Any) -> list[bytes]:
        current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    mw = WSGICostMeterMiddleware(app, metering=metering)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/agents/scribe/run",
        "agenthood.identity": Identity(user_id="alice"),
    }
    body = mw(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"ok"
    assert mw.flush(timeout=5) is True
    assert mw.metering is metering and mw.ledger is metering.ledger
    key = MemoryScope.for_identity(Identity(user_id="alice")).storage_key
    assert metering.ledger.spend_between("user", key, 0, 2**40) == 210_000
    metering.close()


def test_metering_and_its_options_do_not_mix() -> None:
    metering = Metering(prices=PriceTable(PRICES))
    try:
        with pytest.raises(TypeError, match=r"^metering: pass ledger, prices to Metering"):
            CostMeterMiddleware(starlette_app(), metering=metering, prices=PRICES, ledger="x")
        with pytest.raises(TypeError, match=r"^metering: expected"):
            CostMeterMiddleware(starlette_app(), metering="memory://")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^prices: required"):
            CostMeterMiddleware(starlette_app())
        # agent= belongs to the shell (it reads the shell's request): allowed with metering=
        mw = CostMeterMiddleware(starlette_app(), metering=metering, agent=lambda scope: "x")
        assert mw.metering is metering
    finally:
        metering.close()


def test_the_shells_and_metering_share_one_set_of_defaults() -> None:
    from agenthood_mw.metering._settings import settings_from_options

    shell = inspect.signature(CostMeterMiddleware).parameters
    settings = inspect.signature(settings_from_options).parameters
    assert set(shell) - set(settings) == {"app", "metering", "agent"}
    for name, param in settings.items():
        expected = None if name == "prices" else param.default  # required unless metering=
        assert shell[name].default == expected, name


def test_options_are_validated_once_into_frozen_settings() -> None:
    with pytest.raises(ValueError, match=r"^agents: a per='agent' Budget"):
        Metering(prices=PRICES, budgets=[Budget(limit="1.00", per="agent")])
    with pytest.raises(TypeError, match=r"^cost_header"):
        Metering(prices=PRICES, cost_header="yes")
    with pytest.raises(TypeError, match=r"^ledgr: not an option of Metering"):
        Metering(prices=PRICES, ledgr="memory://")
    with pytest.raises(TypeError, match=r"^prices: required"):
        Metering(ledger="memory://")
    metering = Metering(prices=PRICES, exempt_paths=["/health"], agents=["scribe"])
    try:
        settings = metering.settings
        assert isinstance(settings, MeteringSettings)
        assert settings.agents == frozenset({"scribe"})
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.cost_header = False  # type: ignore[misc]
        # Both shells read the one object.
        a = CostMeterMiddleware(starlette_app(), metering=metering)
        w = WSGICostMeterMiddleware(lambda e, s: [], metering=metering)
        assert a.metering.settings is w.metering.settings is settings
    finally:
        metering.close()


def test_begin_and_end_drive_a_run_without_any_shell() -> None:
    """The engine's public pair, driven by a plain test: admit -> open -> run -> settle."""
    metering = Metering(
        prices=PriceTable(PRICES),
        budgets=[Budget(limit="0.0002", per="user", reserve="0.0001")],
        on_alert=None,
    )
    alice = Identity(user_id="alice")
    try:
        meter = metering.begin(alice, "/agents/scribe/run", "scribe")
        assert isinstance(meter, Meter) and meter.agent == "scribe"
        meter.record(model="tiny", input_tokens=1000, output_tokens=100)
        run = metering.end(meter, 200)
        assert isinstance(run, RunRecord) and run.status == 200 and meter.closed
        assert run.totals.cost_nanos == 210_000
        # $0.00021 spent of $0.0002: the budget is used up.
        refused = metering.begin(alice, "/agents/scribe/run", "scribe")
        assert not isinstance(refused, Meter)
        assert (refused.status, refused.type) == (429, "budget_exceeded")
        reserved = metering.begin(Identity(user_id="x", tenant="agenthood.anonymous"), "/", None)
        assert not isinstance(reserved, Meter) and reserved.status == 403
    finally:
        metering.close()


class GatedLedger(SQLiteLedger):
    """A real SQLite ledger whose writes wait for a gate (a database that is slow to answer)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()

    def write_runs(self, runs: Sequence[RunRecord]) -> list[int]:
        self.gate.wait(30)
        return super().write_runs(runs)


async def test_flush_says_whether_it_finished(tmp_path: Any) -> None:
    ledger = GatedLedger(f"{tmp_path}/costs.db")
    mw = CostMeterMiddleware(
        starlette_app(), prices=PriceTable(PRICES), ledger=ledger, traces=None, on_alert=None
    )
    transport = httpx.ASGITransport(app=_with_identity(mw))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/agents/scribe/run", headers={"x-test-user": "alice"})
        assert r.status_code == 200
        assert await mw.flush(timeout=0.2) is False  # the write is still waiting
        ledger.gate.set()
        assert await mw.flush(timeout=None) is True
        assert await ledger.spend(ALICE) == Decimal("0.00021")
    finally:
        ledger.gate.set()
        await mw.close()
        ledger.close_sync()
