"""A finished meter refuses more usage and says so: late usage is never silently lost."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from agenthood_mw import MemoryScope
from agenthood_mw.metering import BudgetExhausted, Meter, PriceTable

PRICES = PriceTable({"gpt-4o": {"input": "2.50", "output": "10.00"}})
SCOPE = MemoryScope.operator(user="alice")


def test_record_after_finish_is_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    meter = Meter(prices=PRICES, scope=SCOPE)
    meter.record(model="gpt-4o", input_tokens=100, output_tokens=10)
    states = [meter.closed]
    run = meter.finish(status=200)
    states.append(meter.closed)
    assert states == [False, True]
    with (
        caplog.at_level(logging.ERROR, logger="agenthood_mw.metering"),
        pytest.raises(BudgetExhausted) as info,
    ):
        meter.record(model="gpt-4o", input_tokens=1000, output_tokens=500)
    assert info.value.reason == "run_finished"
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert meter.run_id in message and "gpt-4o" in message and "1000" in message
    assert meter.totals == run.totals  # nothing counted after the record was frozen
    assert run.totals.model_calls == 1


def test_check_budget_after_finish_is_refused() -> None:
    meter = Meter(prices=PRICES, scope=SCOPE)
    meter.check_budget()
    meter.finish()
    with pytest.raises(BudgetExhausted) as info:
        meter.check_budget()
    assert info.value.reason == "run_finished"


def test_concurrent_records_are_either_in_the_run_or_refused() -> None:
    """Threads record while the run is finished: each call is counted in the frozen record or
    raises; none is accepted and then lost."""
    meter = Meter(prices=PRICES, scope=SCOPE)
    accepted: list[Decimal] = []
    refused: list[int] = []
    start = threading.Barrier(5)
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        for _ in range(2000):
            try:
                cost = meter.record(model="gpt-4o", input_tokens=7, output_tokens=3)
            except BudgetExhausted:
                with lock:
                    refused.append(1)
                return
            with lock:
                accepted.append(cost)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    start.wait()
    deadline = time.monotonic() + 5
    while meter.totals.model_calls < 200 and time.monotonic() < deadline:
        time.sleep(0.001)  # finish while the workers are recording
    run = meter.finish(status=200)
    for t in threads:
        t.join(timeout=10)
    assert 200 <= run.totals.model_calls == len(accepted) == len(run.usage)
    assert run.totals.total_cost == sum(accepted, Decimal(0))
    assert not any(t.is_alive() for t in threads)
    assert len(refused) <= 4


CACHED_PRICES = {"claude": {"input": "3.00", "output": "15.00", "cache_write": "3.75"}}


class FinishingPrices(PriceTable):
    """Finishes the meter while ``record()`` prices the call: the run ends concurrently, after
    ``record()`` saw it open and before it takes the lock (the late path under the lock)."""

    meter: Meter | None = None

    def price(self, model: str, provider: str | None = None) -> Any:
        if self.meter is not None and not self.meter.closed:
            self.meter.finish(status=200)
        return super().price(model, provider)


@pytest.mark.parametrize("race", [False, True], ids=["after-finish", "finish-during-record"])
def test_late_usage_is_logged_with_its_real_cache_counts(
    race: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 #10: the late path under the lock logged ``cache_creation=0`` (and priced it so)
    where the real count was known. Both late paths now log every count and the real cost."""
    prices = FinishingPrices(CACHED_PRICES)
    meter = Meter(prices=prices, scope=SCOPE)
    if race:
        prices.meter = meter
    else:
        meter.finish(status=200)
    with (
        caplog.at_level(logging.ERROR, logger="agenthood_mw.metering"),
        pytest.raises(BudgetExhausted),
    ):
        meter.record(
            model="claude",
            input_tokens=3000,
            output_tokens=100,
            cached_input_tokens=0,
            cache_creation_input_tokens=2000,
        )
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "cache_creation_input_tokens=2000" in message
    # 1000 * $3/M + 2000 * $3.75/M + 100 * $15/M = 0.003 + 0.0075 + 0.0015
    assert "cost=0.012 " in message
