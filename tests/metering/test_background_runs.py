"""Metering outside requests (issue 12): ``metering.run`` / ``arun`` / ``metered`` open a meter
for an identity or an operator scope, with the same ledger, budgets, traces and token rate as
a request, through the engine's own ``begin`` / ``end``."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthood_mw import Identity, MemoryScope, current_meter
from agenthood_mw.metering import (
    Budget,
    BudgetExhausted,
    CostMeterMiddleware,
    MemoryTraceStore,
    Meter,
    Metering,
    PriceTable,
)

from .conftest import PRICES, _with_identity

DIGEST = MemoryScope.operator(user="digest-bot", tenant="ops")
ALICE = Identity(user_id="alice")
COST = Decimal("0.00021")  # tiny: 1000 x 0.15/M + 100 x 0.60/M


def _metering(**options: object) -> Metering:
    return Metering(prices=PriceTable(PRICES), **options)


def _spend(metering: Metering, scope: MemoryScope) -> int:
    assert metering.flush(10)
    return int(metering.ledger.spend_between("user", scope.storage_key, 0, 2**40))


def test_run_charges_an_operator_scope_and_traces_it() -> None:
    traces = MemoryTraceStore()
    metering = _metering(traces=traces, agents=["nightly-digest"])
    with pytest.raises(LookupError):
        current_meter()  # outside a request nothing is metered
    with metering.run(DIGEST, agent="nightly-digest") as meter:
        assert current_meter() is meter
        assert meter.scope == DIGEST and meter.agent == "nightly-digest"
        meter.step("summarise")
        current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
    with pytest.raises(LookupError):
        current_meter()  # unbound at exit
    assert meter.closed
    assert _spend(metering, DIGEST) == 210_000
    assert metering.ledger.spend_between("agent", "nightly-digest", 0, 2**40) == 210_000
    trace = asyncio.run(traces.get(DIGEST, meter.run_id))
    assert (
        trace is not None and trace["totals"]["steps"] == 1 and trace["agent"] == "nightly-digest"
    )
    with pytest.raises(ValueError, match="agent"):
        metering.run(DIGEST, agent="undeclared").__enter__()
    metering.close()


def test_run_for_an_identity_uses_its_scope_and_records_errors() -> None:
    traces = MemoryTraceStore()
    metering = _metering(traces=traces)
    scope = MemoryScope.for_identity(ALICE)
    seen: list[Meter] = []

    def job() -> None:
        with metering.run(ALICE, agent="a") as meter:
            seen.append(meter)
            meter.record(model="tiny", input_tokens=1000, output_tokens=100)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        job()
    meter = seen[0]
    assert _spend(metering, scope) == 210_000  # what was used is still charged
    trace = asyncio.run(traces.get(scope, meter.run_id))
    assert trace is not None and trace["error"] == "RuntimeError: boom"
    with pytest.raises(ValueError, match="unauthenticated"):
        metering.run(Identity(user_id="x", authenticated=False)).__enter__()
    with pytest.raises(TypeError, match="Identity or a MemoryScope"):
        metering.run("alice").__enter__()  # type: ignore[arg-type]
    metering.close()


def test_a_spent_budget_refuses_the_run_before_it_starts() -> None:
    metering = _metering(budgets=[Budget(per="user", limit="0.0003", window="1d")])
    with metering.run(DIGEST) as meter:
        meter.record(model="tiny", input_tokens=1000, output_tokens=100)
        meter.record(model="tiny", input_tokens=1000, output_tokens=100)
    ran = False
    with pytest.raises(BudgetExhausted) as exc, metering.run(DIGEST):
        ran = True
    assert not ran
    assert exc.value.reason == "budget_exhausted:budget"
    assert exc.value.retry_after is not None and exc.value.retry_after > 0
    assert _spend(metering, DIGEST) == 420_000
    metering.close()


def test_the_token_rate_applies_to_background_runs() -> None:
    metering = _metering(tokens_per_minute=1000)
    with metering.run(DIGEST) as meter:
        meter.record(model="tiny", input_tokens=1000, output_tokens=100)
    with pytest.raises(BudgetExhausted) as exc, metering.run(DIGEST):
        pass
    assert exc.value.reason == "token_rate_exceeded"
    metering.close()


def test_arun_and_metered_with_a_middleware_handle() -> None:
    metering = _metering()

    async def route(request: Request) -> JSONResponse:
        current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
        return JSONResponse({})

    app = _with_identity(
        CostMeterMiddleware(Starlette(routes=[Route("/r", route)]), metering=metering)
    )

    @metering.metered(identity=DIGEST, agent="digest")
    async def digest(n: int) -> Meter:
        for _ in range(n):
            current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
        return current_meter()

    @metering.metered(identity=ALICE)
    def sync_job() -> str:
        current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
        return current_meter().run_id

    async def main() -> Meter:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/r", headers={"x-test-user": "alice"})).status_code == 200
        async with metering.arun(DIGEST, agent="digest") as meter:
            current_meter().record(model="tiny", input_tokens=1000, output_tokens=100)
        assert meter.closed
        return await digest(2)

    meter = asyncio.run(main())
    assert meter.closed and meter.agent == "digest"
    run_id = sync_job()
    assert isinstance(run_id, str)
    assert _spend(metering, DIGEST) == 3 * 210_000
    assert _spend(metering, MemoryScope.for_identity(ALICE)) == 2 * 210_000
    with pytest.raises(TypeError):
        metering.metered(identity=None)  # type: ignore[arg-type]
    metering.close()


def test_arun_budget_in_redis(redis_url: str, redis_prefix: str) -> None:
    metering = _metering(
        budgets=[Budget(per="user", limit="0.0002", window="1d")],
        budget_storage=redis_url,
        budget_key_prefix=redis_prefix,
    )

    async def main() -> None:
        async with metering.arun(DIGEST) as meter:
            meter.record(model="tiny", input_tokens=1000, output_tokens=100)
        with pytest.raises(BudgetExhausted):
            async with metering.arun(DIGEST):
                pytest.fail("the block must not run")

    asyncio.run(main())
    assert _spend(metering, DIGEST) == 210_000
    metering.close()
