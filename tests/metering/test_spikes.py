"""The runbook's spike rule over synthetic 10-day histories: exactly the expected alerts, once."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agenthood_mw._core.pricing import to_nanos
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._core.spikes import DAY, History, SpikeRule
from agenthood_mw.metering import (
    CostEstimator,
    CostMeterMiddleware,
    LoggingAlertSink,
    Meter,
    SpikeAlert,
    current_meter,
)

TODAY = 20_000  # a UTC day number
NOON = TODAY * DAY + 12 * 3600.0


def d(amount: str) -> int:
    return to_nanos(amount, option="test")


@pytest.mark.parametrize(
    ("history", "alert", "rule"),
    [
        # quiet: today 1.50 vs 2 x 1.00
        (History(d("1.50"), (d("1"),) * 7, TODAY - 9), False, "baseline"),
        # spiking: 5.00 > 2.00 and the excess 3.00 >= 1.00
        (History(d("5"), (d("1"),) * 7, TODAY - 9), True, "baseline"),
        # exactly 2x is not "exceeds"
        (History(d("2"), (d("1"),) * 7, TODAY - 9), False, "baseline"),
        # cents: 5x the average but only 0.03 above 2x
        (History(d("0.05"), (d("0.01"),) * 7, TODAY - 9), False, "baseline"),
        # 3 days of history: the baseline rule applies, divided by 7 as specified
        (History(d("2"), (0, 0, 0, 0, d("1"), d("1"), d("1")), TODAY - 3), True, "baseline"),
        # 2 days of history: the new-subject threshold applies instead
        (History(d("4"), (0, 0, 0, 0, 0, d("0.10"), d("0.10")), TODAY - 2), False, "new_subject"),
        (History(d("10"), (0,) * 7, None), True, "new_subject"),
        (History(d("9.99"), (0,) * 7, None), False, "new_subject"),
    ],
)
def test_rule_table(history: History, alert: bool, rule: str) -> None:
    decision = SpikeRule().decide(history, TODAY)
    assert (decision.alert, decision.rule) == (alert, rule)


def test_rule_options_are_validated() -> None:
    with pytest.raises(TypeError, match="factor"):
        SpikeRule(factor=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_history_days"):
        SpikeRule(min_history_days=0)
    with pytest.raises(TypeError, match="min_excess"):
        SpikeRule(min_excess=1.0)  # type: ignore[arg-type]
    assert (
        not SpikeRule(new_subject_threshold=None)
        .decide(History(d("1000"), (0,) * 7, None), 1)
        .alert
    )


def _run(prices: Any, user: str, agent: str, day: int, amount: str, n: int = 0) -> Any:
    ts = day * DAY + 3600.0 + n
    meter = Meter(
        prices=prices, scope=MemoryScope.operator(user=user), agent=agent, clock=lambda: ts,
        run_id=f"{user}-{day}-{n}",
    )  # fmt: skip
    meter.record(model="x", input_tokens=1, output_tokens=1, cost=amount)
    return meter.finish(status=200)


def seed_histories(prices: Any, ledger: Any) -> None:
    runs = []
    for back in range(9, 0, -1):
        day = TODAY - back
        runs.append(_run(prices, "quiet", "steady", day, "1.00"))
        runs.append(_run(prices, "cents", "steady", day, "0.01"))
        runs.append(_run(prices, "spiking", "spiky", day, "1.00"))
        if back <= 2:
            runs.append(_run(prices, "two-days", "fresh", day, "0.10"))
    runs += [
        _run(prices, "quiet", "steady", TODAY, "1.50"),
        _run(prices, "cents", "steady", TODAY, "0.05"),
        _run(prices, "spiking", "spiky", TODAY, "5.00"),
        _run(prices, "two-days", "fresh", TODAY, "4.00"),
        _run(prices, "new", "fresh", TODAY, "12.00"),
    ]
    ledger.write_runs(runs)


async def test_synthetic_histories_give_exactly_the_expected_alerts_once(
    prices: Any, ledger: Any
) -> None:
    seed_histories(prices, ledger)
    received: list[SpikeAlert] = []
    estimator = CostEstimator(ledger, clock=lambda: NOON)
    alerts = await estimator.check_spikes(on_alert=received.append)
    got = {(a.per, a.subject, a.rule) for a in alerts}
    assert got == {
        ("user", "spiking", "baseline"),
        ("user", "new", "new_subject"),
        ("agent", "spiky", "baseline"),
        ("agent", "fresh", "new_subject"),
    }
    assert received == alerts
    spiking = next(a for a in alerts if a.subject == "spiking")
    assert (spiking.today, spiking.baseline, spiking.day) == (
        Decimal("5"),
        Decimal("1"),
        "2024-10-04",
    )
    assert spiking.scope == MemoryScope.operator(user="spiking")
    # At most one alert per subject per day.
    assert await estimator.check_spikes(on_alert=received.append) == []
    assert len(received) == 4
    assert await estimator.seven_day_average("user", MemoryScope.operator(user="quiet")) == (
        Decimal("1")
    )
    # 0.20 over the previous 7 days / 7, in whole nano-dollars
    assert await estimator.seven_day_average("agent", "fresh") == Decimal("0.028571428")


async def test_middleware_alerts_once_as_spend_crosses_the_line(
    prices: Any, with_identity: Any, ledger: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed_histories(prices, ledger)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        current_meter().record(model="x", input_tokens=1, output_tokens=1, cost="0.40")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    received: list[SpikeAlert] = []
    mw = CostMeterMiddleware(
        app,
        prices=prices,
        ledger=ledger,
        on_alert=[received.append, LoggingAlertSink()],
        clock=lambda: NOON,
    )
    transport = httpx.ASGITransport(app=with_identity(mw))
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.alerts"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            # quiet: 1.50 today; +0.40 each -> 1.90, 2.30, 2.70, 3.10 (> 2.00 + 1.00 min excess)
            for _ in range(6):
                await client.get("/agents/steady/run", headers={"x-test-user": "quiet"})
                await mw.flush()
    # user quiet: 1.50 + 4 x 0.40 = 3.10 >= 2 x 1.00 + 1.00;
    # agent steady (quiet + cents): 1.55 + 4 x 0.40 = 3.15 >= 2 x 1.01 + 1.00. Each once.
    assert [(a.per, a.subject, a.today) for a in received] == [
        ("user", "quiet", Decimal("3.10")),
        ("agent", "steady", Decimal("3.15")),
    ]
    assert sum("cost spike: user quiet" in r.getMessage() for r in caplog.records) == 1
    await mw.close()
