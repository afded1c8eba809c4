"""Budgets at the call (issue 12): ``Meter.reserve_call`` sizes the reservation from the call.

The estimate is input tokens x input price + ``max_output_tokens`` x output price; the run's
holds grow to its spend plus its calls in flight only when that fits every hard budget. Real
threads run real meters against a budget in memory and in Redis: when every call sets
``max_tokens`` (its cost never exceeds its estimate) the budget is never overshot.
"""

from __future__ import annotations

import math
import threading
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthood_mw import Identity, MemoryScope
from agenthood_mw._core.budgets import BudgetBook, BudgetRule
from agenthood_mw.metering import (
    Budget,
    BudgetExhausted,
    CallReservation,
    Meter,
    Metering,
    PriceTable,
    estimate_tokens,
)
from agenthood_mw.metering._calls import CHARS_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS

NANOS = 10**9
# $1 per million input tokens, $4 per million output tokens: 1 000 nanos / 4 000 nanos a token.
PRICES = PriceTable({"m": {"input": "1.00", "output": "4.00"}})


def _metering(limit: str, storage: str = "memory://", prefix: str | None = None) -> Metering:
    options: dict[str, object] = {
        "prices": PRICES,
        "budgets": [Budget(per="user", limit=limit, window="1d", reserve="0.0001")],
        "budget_storage": storage,
    }
    if prefix is not None:
        options["budget_key_prefix"] = prefix
    return Metering(**options)


def test_estimate_tokens_heuristic_and_messages() -> None:
    # tiktoken cannot load an encoding offline here, or is absent: the documented heuristic.
    text = "x" * 41
    n = estimate_tokens(text, "some-unknown-model")
    assert n >= 1
    messages = [{"role": "user", "content": text}, {"role": "system", "content": [{"text": "ab"}]}]
    total = estimate_tokens(messages, "some-unknown-model")
    assert total == n + estimate_tokens("ab", "some-unknown-model") + 2 * MESSAGE_OVERHEAD_TOKENS
    with pytest.raises(TypeError):
        estimate_tokens(42, "m")


def test_heuristic_is_ceil_chars_over_four(monkeypatch: pytest.MonkeyPatch) -> None:
    from agenthood_mw.metering import _calls

    monkeypatch.setattr(_calls, "_encoding", lambda model: None)
    for length in (0, 1, 4, 5, 400, 401):
        assert estimate_tokens("y" * length, "m") == math.ceil(length / CHARS_PER_TOKEN)


def test_reservation_is_priced_from_the_call_and_settles() -> None:
    metering = _metering("1.00")
    meter = metering.begin(Identity(user_id="u"), None, None)
    assert isinstance(meter, Meter)
    r = meter.reserve_call(model="m", input_tokens_estimate=1000, max_output_tokens=500)
    assert isinstance(r, CallReservation)
    assert r.estimate_nanos == 1000 * 1000 + 500 * 4000
    assert r.estimate == Decimal("0.003")
    cost = r.settle(input_tokens=900, output_tokens=100)
    assert cost == Decimal("0.0013")
    assert r.done and meter._pending == 0
    r.release()  # twice: nothing
    assert meter._pending == 0
    with meter.reserve_call(model="m", input_tokens_estimate=10) as r2:
        assert meter._pending == r2.estimate_nanos == 10_000
    assert meter._pending == 0  # released on exit (no usage)
    unknown = meter.reserve_call(model="not-priced", input_tokens_estimate=10**6)
    assert unknown.estimate_nanos == 0
    unknown.release()
    metering.end(meter, 200)
    with pytest.raises(BudgetExhausted) as exc:
        meter.reserve_call(model="m")
    assert exc.value.reason == "run_finished"
    with pytest.raises(ValueError):
        meter.reserve_call(model="m", input_tokens_estimate=-1)
    metering.close()


def test_a_call_that_does_not_fit_is_refused_and_reserves_nothing() -> None:
    metering = _metering("0.01")  # 10 000 000 nanos
    meter = metering.begin(Identity(user_id="u"), None, None)
    assert isinstance(meter, Meter)
    # 2 000 output tokens x 4 000 nanos = 8 000 000: fits; another one does not.
    first = meter.reserve_call(model="m", max_output_tokens=2000)
    with pytest.raises(BudgetExhausted) as exc:
        meter.reserve_call(model="m", max_output_tokens=2000)
    assert exc.value.reason == "budget_exhausted:budget"
    assert exc.value.retry_after is not None
    assert meter._pending == first.estimate_nanos
    first.settle(input_tokens=0, output_tokens=1000)  # cost 4 000 000
    second = meter.reserve_call(model="m", max_output_tokens=1500)  # 4M + 6M = the limit: fits
    second.release()
    metering.end(meter, 200)
    metering.close()


def _burst(metering: Metering, runs: int, input_tokens: int, max_out: int, used_out: int) -> int:
    """``runs`` concurrent runs of one user, each looping reserve -> (sleep) -> settle until
    refused; returns the user's committed spend in nano-dollars after every run ended."""
    alice = Identity(user_id="alice")
    barrier = threading.Barrier(runs)
    errors: list[BaseException] = []
    reasons: list[str] = []

    def one_run(k: int) -> None:
        try:
            meter = metering.begin(alice, None, None)
            assert isinstance(meter, Meter)
            barrier.wait()
            try:
                while True:
                    r = meter.reserve_call(
                        model="m", input_tokens_estimate=input_tokens, max_output_tokens=max_out
                    )
                    threading.Event().wait(0.0002 * (k % 3))  # the call is in flight
                    r.settle(input_tokens=input_tokens, output_tokens=used_out)
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
    assert metering.flush(30)
    key = MemoryScope.for_identity(alice).storage_key
    return int(metering.ledger.spend_between("user", key, 0, 2**40))


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_burst_with_max_tokens_never_overshoots(
    storage: str, request: pytest.FixtureRequest
) -> None:
    if storage == "redis":
        url = request.getfixturevalue("redis_url")
        metering = _metering("0.50", url, request.getfixturevalue("redis_prefix"))
    else:
        metering = _metering("0.50")
    try:
        # estimate 100*1000 + 1000*4000 = 4.1M nanos; used 100*1000 + 700*4000 = 2.9M nanos.
        spent = _burst(metering, runs=12, input_tokens=100, max_out=1000, used_out=700)
    finally:
        metering.close()
    limit = 500_000_000
    assert spent <= limit
    # The budget was actually used: less than one call's estimate per run is left over.
    assert spent > limit - 12 * 4_100_000


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_burst_without_max_tokens_overshoots_at_most_one_call_per_run(
    storage: str, request: pytest.FixtureRequest
) -> None:
    if storage == "redis":
        url = request.getfixturevalue("redis_url")
        metering = _metering("0.50", url, request.getfixturevalue("redis_prefix"))
    else:
        metering = _metering("0.50")
    runs = 12
    try:
        # No max_tokens: only the input (100 000 nanos) is reserved; each call costs 2.9M.
        spent = _burst(metering, runs=runs, input_tokens=100, max_out=0, used_out=700)
    finally:
        metering.close()
    assert spent <= 500_000_000 + runs * 2_900_000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 400), st.booleans()), min_size=1, max_size=60
    )
)
def test_resize_never_reserves_past_the_limit(ops: list[tuple[int, int, bool]]) -> None:
    """Invariant of ``BudgetBook.resize``: a grow that succeeds keeps committed + reserved
    within the limit; a shrink always succeeds; a settle commits the hold's final amount."""
    limit = 1000
    rule = BudgetRule("user", limit, 86_400.0, 10, 0)
    book = BudgetBook([rule], ttl=600)
    subjects: dict[str, str | None] = {"user": "u"}
    holds: dict[int, tuple[object, int]] = {}
    for slot, amount, settle in ops:
        if slot not in holds:
            admission = book.admit(subjects, 10.0)
            if not hasattr(admission, "holds"):
                continue
            holds[slot] = (admission.holds, 10)
        hs, current = holds[slot]
        if settle:
            book.settle(hs, current)  # type: ignore[arg-type]
            del holds[slot]
            continue
        before = book.snapshot(rule, "u", 10.0)
        refusal = book.resize(hs, amount, 10.0)  # type: ignore[arg-type]
        committed, reserved = book.snapshot(rule, "u", 10.0)
        if refusal is None:
            holds[slot] = (hs, amount)
            if amount > current:  # a grow that succeeded fits the limit
                assert committed + reserved <= limit
        else:
            assert amount > current  # shrinking is never refused
            assert (committed, reserved) == before  # a refusal changes nothing
        assert reserved == sum(a for _, a in holds.values())


def test_thinking_budget_max_cost_counts_the_calls_in_flight() -> None:
    from agenthood_mw.metering import ThinkingBudget

    metering = Metering(prices=PRICES, thinking_budget=ThinkingBudget(max_cost="0.01"))
    meter = metering.begin(Identity(user_id="u"), None, None)
    assert isinstance(meter, Meter)
    first = meter.reserve_call(model="m", max_output_tokens=2000)  # $0.008 in flight
    with pytest.raises(BudgetExhausted) as exc:
        meter.reserve_call(model="m", max_output_tokens=1000)  # +$0.004 > $0.01
    assert exc.value.reason == "budget_exhausted:cost"
    assert meter.stop_reason == "budget_exhausted:cost"
    assert meter._pending == first.estimate_nanos
    first.release()
    meter.reserve_call(model="m", max_output_tokens=1000).release()  # fits once released
    metering.end(meter, 200)
    metering.close()


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_areserve_call_from_concurrent_tasks(storage: str, request: pytest.FixtureRequest) -> None:
    """``areserve_call`` from many tasks of one event loop (Redis I/O in worker threads):
    with max_tokens on every call, the budget is never overshot."""
    import asyncio

    if storage == "redis":
        url = request.getfixturevalue("redis_url")
        metering = _metering("0.20", url, request.getfixturevalue("redis_prefix"))
    else:
        metering = _metering("0.20")
    alice = Identity(user_id="alice")

    async def one_run() -> str:
        meter = await metering.begin_async(alice, None, None)
        assert isinstance(meter, Meter)
        try:
            while True:
                r = await meter.areserve_call(
                    model="m", input_tokens_estimate=100, max_output_tokens=1000
                )
                await asyncio.sleep(0.001)  # the call is in flight
                r.settle(input_tokens=100, output_tokens=900)
        except BudgetExhausted as exc:
            return exc.reason
        finally:
            await metering.end_async(meter, 200)

    async def main() -> list[str]:
        return await asyncio.gather(*(one_run() for _ in range(10)))

    try:
        assert asyncio.run(main()) == ["budget_exhausted:budget"] * 10
        assert metering.flush(30)
        key = MemoryScope.for_identity(alice).storage_key
        spent = metering.ledger.spend_between("user", key, 0, 2**40)
    finally:
        metering.close()
    assert 200_000_000 - 10 * 4_100_000 < spent <= 200_000_000
