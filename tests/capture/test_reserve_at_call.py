"""Budgets at the call through the capture transports: every captured call is reserved from its
request (model, estimated input tokens, ``max_tokens``) before it is sent, settled with the
usage read from the wire, released when the provider refused it.

Concurrent runs of one user share a hard ``Budget`` (in memory and in Redis), each looping real
SDK calls against the fake provider until refused: with ``max_tokens`` on every call the budget
is never overshot; the refused calls never reached the provider.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import httpx2
import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider

from agenthood_mw import Budget, Identity, MemoryScope
from agenthood_mw.capture.httpx2 import MeteredAsyncTransport, MeteredTransport
from agenthood_mw.metering import (
    BudgetExhausted,
    Meter,
    Metering,
    estimate_tokens,
    reset_meter,
    set_meter,
)

openai = pytest.importorskip("openai")

ALICE = Identity(user_id="alice")
LIMIT = "0.001"  # 1 000 000 nano-dollars
LIMIT_NANOS = 1_000_000
RUNS = 8
# A prompt estimated above what the fake provider reports (100 + max_tokens input tokens).
LONG = [{"role": "user", "content": "hello " * 100}]
SHORT = [{"role": "user", "content": "go"}]


# The budget's admission ``reserve`` is below every call's estimate: a run's hold then only
# grows through ``reserve_call``'s checked resize. (With a ``reserve`` above the estimate, the
# hold grown by ``check_budget``'s extend - checked only for "some headroom left" - is shrunk
# back by the resize without a check; see the report of this change.)
def _metering(storage: str, request: pytest.FixtureRequest | None = None) -> Metering:
    options: dict[str, object] = {
        "prices": PRICES,
        "budgets": [Budget(per="user", limit=LIMIT, window="1d", reserve="0.0000001")],
    }
    if request is not None and storage == "redis":
        options["budget_storage"] = request.getfixturevalue("redis_url")
        options["budget_key_prefix"] = request.getfixturevalue("redis_prefix")
    return Metering(**options)


def _spent(metering: Metering) -> int:
    assert metering.flush(30)
    key = MemoryScope.for_identity(ALICE).storage_key
    return int(metering.ledger.spend_between("user", key, 0, 2**40))


def _sync_burst(
    metering: Metering, provider: Provider, messages: list[dict[str, str]], max_tokens: int | None
) -> list[int]:
    """``RUNS`` threads, one run each, looping SDK calls until refused; the calls made per run."""
    client = openai.OpenAI(
        api_key="k",
        base_url=provider.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
        max_retries=3,
    )
    extra = {} if max_tokens is None else {"max_tokens": max_tokens}
    barrier = threading.Barrier(RUNS)
    made = [0] * RUNS
    reasons: list[str] = []
    errors: list[BaseException] = []

    def one_run(k: int) -> None:
        try:
            meter = metering.begin(ALICE, None, None)
            assert isinstance(meter, Meter)
            token = set_meter(meter)
            barrier.wait()
            try:
                while True:
                    client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=messages,  # type: ignore[arg-type]
                        **extra,  # type: ignore[arg-type]
                    )
                    made[k] += 1
            except BudgetExhausted as exc:
                reasons.append(exc.reason)
            finally:
                reset_meter(token)
                assert meter._pending == 0  # every reservation settled
                metering.end(meter, 200)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(k,)) for k in range(RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    client.close()
    assert not errors
    assert reasons == ["budget_exhausted:budget"] * RUNS
    return made


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_sync_burst_with_max_tokens_overshoots_by_zero(
    storage: str, request: pytest.FixtureRequest, fresh: Provider
) -> None:
    metering = _metering(storage, request)
    try:
        made = _sync_burst(metering, fresh, LONG, max_tokens=10)
        spent = _spent(metering)
    finally:
        metering.close()
    hits = fresh.hits()
    # The refused calls (one per run) never arrived, nor a retry of them.
    assert len(hits) == sum(made)
    assert spent == expected_nanos("gpt-4o-mini", hits)  # settled with the wire's usage
    assert max(0, spent - LIMIT_NANOS) == 0  # the overshoot
    # The budget was used: less than one call's estimate per run is left over.
    estimate = estimate_tokens(LONG, "gpt-4o-mini") * 150 + 10 * 600
    assert spent > LIMIT_NANOS - RUNS * estimate


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_async_burst_with_max_tokens_overshoots_by_zero(
    storage: str, request: pytest.FixtureRequest, fresh: Provider
) -> None:
    metering = _metering(storage, request)
    made = [0] * RUNS

    async def one_run(client: object, k: int) -> str:
        meter = await metering.begin_async(ALICE, None, None)
        assert isinstance(meter, Meter)
        token = set_meter(meter)
        try:
            while True:
                await client.chat.completions.create(  # type: ignore[attr-defined]
                    model="gpt-4o-mini", messages=LONG, max_tokens=10
                )
                made[k] += 1
        except BudgetExhausted as exc:
            return exc.reason
        finally:
            reset_meter(token)
            assert meter._pending == 0
            await metering.end_async(meter, 200)

    async def main() -> list[str]:
        client = openai.AsyncOpenAI(
            api_key="k",
            base_url=fresh.url + "/v1",
            http_client=httpx2.AsyncClient(transport=MeteredAsyncTransport()),
            max_retries=3,
        )
        try:
            return await asyncio.gather(*(one_run(client, k) for k in range(RUNS)))
        finally:
            await client.close()

    try:
        assert asyncio.run(main()) == ["budget_exhausted:budget"] * RUNS
        spent = _spent(metering)
    finally:
        metering.close()
    hits = fresh.hits()
    assert len(hits) == sum(made)
    assert spent == expected_nanos("gpt-4o-mini", hits)
    assert max(0, spent - LIMIT_NANOS) == 0


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_burst_without_max_tokens_stays_within_one_call_per_run(
    storage: str, request: pytest.FixtureRequest, fresh: Provider
) -> None:
    metering = _metering(storage, request)
    try:
        # No max_tokens: the reservation is the input estimate only (6 tokens x 150 nanos);
        # the provider answers 105 input (30 cached) + 5 output tokens: 16 500 nanos a call.
        made = _sync_burst(metering, fresh, SHORT, max_tokens=None)
        spent = _spent(metering)
    finally:
        metering.close()
    hits = fresh.hits()
    assert len(hits) == sum(made)
    one_call = expected_nanos("gpt-4o-mini", hits[:1])
    assert one_call == 75 * 150 + 30 * 75 + 5 * 600
    assert spent == expected_nanos("gpt-4o-mini", hits)
    # The documented bound: at most one call's cost per run in flight beyond the limit.
    assert spent <= LIMIT_NANOS + RUNS * one_call


def test_refused_by_provider_releases_the_reservation(fresh: Provider) -> None:
    metering = _metering("memory")
    client = openai.OpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
        max_retries=0,
    )
    meter = metering.begin(ALICE, None, None)
    assert isinstance(meter, Meter)
    token = set_meter(meter)
    try:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=LONG,  # type: ignore[arg-type]
                max_tokens=10,
                extra_headers={"x-fake": "429"},
            )
        assert meter._pending == 0  # a 429 costs nothing and holds nothing
        assert meter.totals.total_cost == Decimal(0)
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=LONG,  # type: ignore[arg-type]
            max_tokens=10,
        )
        assert meter._pending == 0
        assert meter.totals.model_calls == 1
    finally:
        reset_meter(token)
        metering.end(meter, 200)
        metering.close()
        client.close()
    assert [h.status for h in fresh.hits()] == [429, 200]
