"""The official ``openai`` SDK (sync and async, JSON and SSE) through a metered transport of
each HTTP stack, against the fake provider: the meter equals what the server reported."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from capture_kit import bound_meter, expected_nanos
from provider_server import Provider

openai = pytest.importorskip("openai")

STACKS = ["httpx", "httpx2"]
MODEL = "gpt-4o-mini"


def _sync_client(provider: Provider, stack: str, **kw: Any) -> Any:
    http = importlib.import_module(stack)
    capture = importlib.import_module(f"agenthood_mw.capture.{stack}")
    return openai.OpenAI(
        api_key="k",
        base_url=provider.url + "/v1",
        http_client=http.Client(transport=capture.MeteredTransport()),
        **kw,
    )


def _async_client(provider: Provider, stack: str, **kw: Any) -> Any:
    http = importlib.import_module(stack)
    capture = importlib.import_module(f"agenthood_mw.capture.{stack}")
    return openai.AsyncOpenAI(
        api_key="k",
        base_url=provider.url + "/v1",
        http_client=http.AsyncClient(transport=capture.MeteredAsyncTransport()),
        **kw,
    )


MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("stack", STACKS)
def test_sync_chat_json_and_stream(fresh: Provider, stack: str) -> None:
    client = _sync_client(fresh, stack)
    with bound_meter() as meter:
        client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=7)
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=9,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert len(chunks) == 10
    t = meter.totals
    assert t.model_calls == 2
    assert t.input_tokens == 107 + 109
    assert t.output_tokens == 16
    assert t.cached_input_tokens == 60
    assert t.reasoning_tokens == 3 + 4
    assert t.cost_nanos == expected_nanos(MODEL, fresh.hits()) > 0


@pytest.mark.parametrize("stack", STACKS)
async def test_async_chat_responses_embeddings(fresh: Provider, stack: str) -> None:
    client = _async_client(fresh, stack)
    with bound_meter() as meter:
        await client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=3)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
        await client.responses.create(model=MODEL, input="hi", max_output_tokens=6)
        rstream = await client.responses.create(
            model=MODEL, input="hi", max_output_tokens=8, stream=True
        )
        async for _ in rstream:
            pass
        before = meter.totals.cost_nanos
        await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    t = meter.totals
    assert t.model_calls == 5
    assert before == expected_nanos(MODEL, fresh.hits()[:4])
    assert t.cost_nanos - before == expected_nanos("text-embedding-3-small", fresh.hits()[4:])
    assert t.input_tokens == 103 + 104 + 106 + 108 + 14
    assert t.output_tokens == 3 + 4 + 6 + 8
    assert t.reasoning_tokens == 1 + 2 + 3 + 4


@pytest.mark.parametrize("stack", STACKS)
def test_sync_responses_stream(fresh: Provider, stack: str) -> None:
    client = _sync_client(fresh, stack)
    with bound_meter() as meter:
        stream = client.responses.create(model=MODEL, input="hi", max_output_tokens=5, stream=True)
        for _ in stream:
            pass
    assert meter.totals.output_tokens == 5
    assert meter.totals.cost_nanos == expected_nanos(MODEL, fresh.hits())


@pytest.mark.parametrize("stack", STACKS)
def test_no_meter_passes_through_uncharged(fresh: Provider, stack: str) -> None:
    client = _sync_client(fresh, stack)
    reply = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=2)
    assert reply.usage is not None and reply.usage.completion_tokens == 2
    assert len(fresh.hits()) == 1


@pytest.mark.parametrize("stack", STACKS)
def test_retries_charge_only_the_attempt_with_usage(fresh: Provider, stack: str) -> None:
    client = _sync_client(fresh, stack, max_retries=2)
    with bound_meter() as meter:
        client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=4,
            extra_headers={"x-fake": "fail-first", "x-fake-key": f"retry-{stack}"},
        )
    statuses = [h.status for h in fresh.hits()]
    assert statuses == [500, 200]
    assert meter.totals.model_calls == 1
    assert meter.totals.cost_nanos == expected_nanos(MODEL, fresh.hits())
    attempts = [e for e in meter._events if isinstance(e, dict) and e["type"] == "http_attempt"]
    # The refused attempt is traced as such; the charged one by its usage event.
    assert [(a["attrs"]["status"], a["attrs"]["charged"]) for a in attempts] == [(500, False)]
    assert [e.model for e in meter._events if not isinstance(e, dict)] == [MODEL]


@pytest.mark.parametrize("mode", ["429", "500"])
def test_refused_attempts_cost_nothing(fresh: Provider, mode: str) -> None:
    client = _sync_client(fresh, "httpx2", max_retries=1)
    with bound_meter() as meter, pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model=MODEL, messages=MSG, max_tokens=4, extra_headers={"x-fake": mode}
        )
    assert [h.status for h in fresh.hits()] == [int(mode)] * 2
    assert meter.totals.model_calls == 0
    assert meter.totals.cost_nanos == 0


def test_stream_stopped_early_is_charged_for_what_was_produced(fresh: Provider) -> None:
    client = _sync_client(fresh, "httpx2")
    with bound_meter() as meter:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()
    t = meter.totals
    assert t.model_calls == 1
    # Estimate: the chunks received (at least the 3 read), input from the request size.
    assert 3 <= t.output_tokens <= 20
    assert t.input_tokens > 0


def test_cut_stream_is_charged_an_estimate(fresh: Provider) -> None:
    client = _sync_client(fresh, "httpx2", max_retries=0)
    with bound_meter() as meter:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-fake": "cut"},
        )
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
    t = meter.totals
    assert t.model_calls == 1
    # The server sent 6 of its 12 events (10 chunks, usage, [DONE]) before the cut.
    assert t.output_tokens == 6
    events = [e for e in meter._events if isinstance(e, dict) and e["type"] == "http_attempt"]
    assert events[-1]["attrs"]["estimated"] is True


def test_missing_usage_is_estimated(fresh: Provider) -> None:
    client = _sync_client(fresh, "httpx")
    with bound_meter() as meter:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=6,
            stream=True,
            extra_headers={"x-fake": "nousage"},
        )
        for _ in stream:
            pass
    assert meter.totals.output_tokens == 6
    assert meter.totals.model_calls == 1


@pytest.mark.parametrize("stack", STACKS)
def test_gzipped_json_body_is_read(fresh: Provider, stack: str) -> None:
    client = _sync_client(fresh, stack)
    with bound_meter() as meter:
        reply = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MSG, max_tokens=11, extra_headers={"x-fake-gzip": "1"}
        )
    assert reply.headers["content-encoding"] == "gzip"
    assert reply.parse().usage.completion_tokens == 11
    assert meter.totals.output_tokens == 11
    assert meter.totals.cost_nanos == expected_nanos(MODEL, fresh.hits())


def test_stalled_stream_that_times_out_is_charged_its_estimate(fresh: Provider) -> None:
    client = _sync_client(fresh, "httpx2", max_retries=0, timeout=0.1)
    with bound_meter() as meter:
        stream = client.chat.completions.create(
            model=MODEL, messages=MSG, max_tokens=3, stream=True, extra_headers={"x-fake": "stall"}
        )
        with pytest.raises(openai.APITimeoutError):
            for _ in stream:
                pass
    # Nothing was produced before the read timed out: an estimate of 0 output tokens.
    assert meter.totals.output_tokens == 0
    assert meter.totals.model_calls == 1


async def test_a_stream_read_after_its_run_finished_charges_no_one(fresh: Provider) -> None:
    client = _async_client(fresh, "httpx2")
    with bound_meter(user="early") as meter:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        record = meter.finish()
    with bound_meter(user="other") as other:
        async for _ in stream:
            pass
    assert record.totals.model_calls == 0
    assert meter.totals.model_calls == 0
    assert other.totals.model_calls == 0


def test_unreadable_usage_never_breaks_the_client(
    fresh: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    client = _sync_client(fresh, "httpx2")
    with bound_meter() as meter:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MSG,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-fake": "badusage"},
        )
        chunks = list(stream)
    assert len(chunks) == 5  # the client read everything, the bad usage chunk included
    assert meter.totals.model_calls == 1  # charged the estimate
    assert meter.totals.output_tokens == 4
    assert "unreadable" in caplog.text


def test_cut_responses_stream_counts_its_text_deltas(fresh: Provider) -> None:
    client = _sync_client(fresh, "httpx2", max_retries=0)
    with bound_meter() as meter:
        stream = client.responses.create(
            model=MODEL,
            input="hi",
            max_output_tokens=8,
            stream=True,
            extra_headers={"x-fake": "cut"},
        )
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
    # 10 events (created, 8 deltas, completed); cut after 5: created and 4 deltas.
    assert meter.totals.output_tokens == 4
    assert meter.totals.model_calls == 1
