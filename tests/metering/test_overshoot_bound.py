"""The documented overshoot bound of a hard budget when runs outgrow their reservation.

Issue 11 #16: five runs in flight, each calling ``check_budget()`` before every $0.009 model
call, overshot a $1.00 budget by $0.04. ``docs/cost-metering.md`` states the bound: less than
one reservation plus one model call per run in flight (plus one). Here real threads run real
meters concurrently through the engine's public ``begin`` / ``end`` until the budget stops them.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from agenthood_mw import Identity, MemoryScope
from agenthood_mw.metering import Budget, BudgetExhausted, Meter, Metering, PriceTable

LIMIT = Decimal("1.00")
RESERVE = Decimal("0.01")
CALL = Decimal("0.009")
NANOS = 10**9


def run_until_stopped(metering: Metering, runs: int, calls: list[int]) -> int:
    """``runs`` concurrent runs of one user; returns the committed spend in nano-dollars."""
    alice = Identity(user_id="alice")
    start = threading.Barrier(runs)
    errors: list[BaseException] = []
    reasons: list[str] = []

    def one_run(k: int) -> None:
        try:
            meter = metering.begin(alice, "/agents/a/run", "a")
            assert isinstance(meter, Meter)
            start.wait()
            try:
                while True:
                    meter.check_budget()  # before each model call, as documented
                    time.sleep(0.0005 * (k % 3))  # the call takes a while; runs interleave
                    meter.record(model="m", input_tokens=1, output_tokens=1, cost=CALL)
                    calls[k] += 1
            except BudgetExhausted as exc:
                reasons.append(exc.reason)
            metering.end(meter, 200)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(k,)) for k in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert reasons == ["budget_exhausted:budget"] * runs
    key = MemoryScope.for_identity(alice).storage_key
    return int(metering.ledger.spend_between("user", key, 0, 2**40))


@pytest.mark.parametrize("runs", [1, 5, 16])
def test_overshoot_stays_below_a_reservation_plus_one_call_per_run_in_flight(runs: int) -> None:
    metering = Metering(
        prices=PriceTable({}, unknown="zero"),
        budgets=[Budget(limit=LIMIT, per="user", reserve=RESERVE)],
        on_alert=None,
        traces=None,
    )
    calls = [0] * runs
    try:
        spent = run_until_stopped(metering, runs, calls)
    finally:
        metering.close()
    assert sum(calls) * int(CALL * NANOS) == spent
    bound = (RESERVE + (runs + 1) * CALL) * NANOS
    assert LIMIT * NANOS <= spent < LIMIT * NANOS + bound
    # Every run got to spend: the budget was shared, not taken by the first run alone.
    assert all(calls)
