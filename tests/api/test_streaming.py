"""Streamed runs (SSE) in process: the event sequence, the final event's exact run response,
validation before streaming, budget stops, errors, heartbeats, sync agents, the encoder."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenthood_mw.api import (
    AgenthoodAPI,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderFailover,
    RunContext,
)
from agenthood_mw.api._sse import encode_comment, encode_event, wants_event_stream
from agenthood_mw.api.demo import demo_agents

from .test_app import SEED_KEYS, SpyAgent, client, make_api, token

if TYPE_CHECKING:
    from .conftest import LLMServer

SSE = {"accept": "text/event-stream"}


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events of an SSE body: ``{"event", "data" (parsed JSON), "id"}``; comments as
    ``{"comment": text}``."""
    events: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                event["comment"] = value
            elif field == "data":
                event["data"] = json.loads(value, parse_float=Decimal)
            else:
                event[field] = value
        events.append(event)
    return events


class Crasher:
    name = "crasher"
    description = "fails after one step"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("doomed")
        raise RuntimeError("boom")


class Sleeper:
    name = "sleeper"
    description = "thinks quietly, then answers"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("think")
        await anyio.sleep(0.35)
        return "awake"


class SyncStreamer:
    name = "sync-streamer"
    description = "a plain def agent that streams its answer"

    def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("write")
        ctx.tool_call("lookup", arguments={"q": task}, result=3)
        ctx.emit("Hello, ")
        ctx.emit("world")
        return "Hello, world!"


async def test_stream_sends_start_steps_deltas_and_the_exact_run_response() -> None:
    api = make_api()
    async with client(api) as c:
        r = await c.post(
            "/agents/the-developer/run", json={"task": "tidy the README"}, headers=token("ann")
        )
        plain = r.json()
        s = await c.post(
            "/agents/the-developer/run",
            json={"task": "tidy the README"},
            headers={**token("ann"), **SSE},
        )
    await api.aclose()
    assert s.status_code == 200
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.headers["cache-control"] == "no-store"
    events = parse_sse(s.text)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "result"
    assert [e["id"] for e in events] == [str(i) for i in range(1, len(events) + 1)]
    start, result = events[0]["data"], events[-1]["data"]
    assert start == {
        "runId": result["runId"],
        "agent": "the-developer",
        "userId": "ann",
        "memoryScope": "ann",
    }
    assert s.headers["x-agenthood-run-id"] == result["runId"]
    # the final event is exactly the run response (same keys, order, exact decimal cost)
    assert list(result) == list(plain) and set(result) == SEED_KEYS
    final_line = s.text.rstrip("\n").rsplit("\n", 1)[1]
    assert final_line.startswith('data: {"agent":"the-developer"')
    assert '"totalCost":0.' in final_line
    same_run = json.loads(r.text, parse_float=Decimal)
    assert {k: v for k, v in result.items() if k != "runId"} == {
        k: v for k, v in same_run.items() if k != "runId"
    }
    steps = [e["data"] for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, result["steps"] + 1))
    assert steps[0] == {"step": 1, "name": "plan", "attrs": {}}
    assert steps[1]["name"] == "execute" and steps[1]["attrs"]["number"] == 1
    deltas = [e["data"]["text"] for e in events if e["event"] == "delta"]
    assert len(deltas) > 10  # the offline provider streams word by word
    assert "".join(deltas).startswith("[offline] 1. Read the code")


async def test_stream_true_in_the_body_streams_too() -> None:
    api = make_api()
    async with client(api) as c:
        s = await c.post(
            "/agents/the-scribe/run",
            json={"task": "remember colour: teal", "stream": True},
            headers=token("ann"),
        )
    await api.aclose()
    events = parse_sse(s.text)
    assert [e["event"] for e in events] == ["start", "step", "result"]
    assert events[-1]["data"]["output"] == "Noted: colour = teal"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "kind"),
    [
        ("/agents/nope/run", {"task": "x"}, True, 404, "unknown_agent"),
        ("/agents/the-scribe/run", {"task": ""}, True, 422, "invalid_task"),
        ("/agents/the-scribe/run", {"task": "x", "stream": "yes"}, True, 422, "invalid_request"),
        ("/agents/the-scribe/run", {"task": "x", "stream": True}, False, 401, "unauthorized"),
    ],
)
async def test_refused_streams_are_plain_json_errors(
    path: str, body: dict[str, Any], headers: bool, status: int, kind: str
) -> None:
    api = make_api()
    async with client(api) as c:
        r = await c.post(path, json=body, headers={**(token("ann") if headers else {}), **SSE})
    await api.aclose()
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["type"] == kind
    assert await api.ledger.spend(api_scope("ann")) == 0


def api_scope(user: str) -> Any:
    from agenthood_mw import MemoryScope

    return MemoryScope.operator(user=user)


async def test_a_thinking_budget_ends_the_stream_cleanly_with_its_stop_reason() -> None:
    api = make_api()
    async with client(api) as c:
        s = await c.post(
            "/agents/the-developer/run",
            json={"task": "a big job", "stream": True, "budget": {"maxSteps": 2}},
            headers=token("ann"),
        )
    await api.aclose()
    events = parse_sse(s.text)
    assert events[-1]["event"] == "result"
    result = events[-1]["data"]
    assert result["stopReason"] == "budget_exhausted:steps"
    assert result["steps"] == 2
    assert result["output"].startswith("Completed 1 of ")
    assert not [e for e in events if e["event"] == "error"]


async def test_a_failing_agent_ends_the_stream_with_an_error_event() -> None:
    api = make_api([Crasher()])
    async with client(api) as c:
        s = await c.post("/agents/crasher/run", json={"task": "x"}, headers={**token("a"), **SSE})
    await api.aclose()
    assert s.status_code == 200  # the stream had started
    events = parse_sse(s.text)
    assert [e["event"] for e in events] == ["start", "step", "error"]
    assert events[-1]["data"] == {
        "error": {"type": "agent_error", "message": "the agent failed; see the run trace"}
    }
    assert "boom" not in s.text


async def test_heartbeats_keep_an_idle_stream_alive() -> None:
    api = make_api([Sleeper()], heartbeat=0.1)
    async with client(api) as c:
        s = await c.post("/agents/sleeper/run", json={"task": "x"}, headers={**token("a"), **SSE})
    await api.aclose()
    events = parse_sse(s.text)
    assert sum(1 for e in events if e.get("comment") == "ping") >= 2
    assert events[-1]["data"]["output"] == "awake"


async def test_a_sync_agent_streams_from_its_worker_thread() -> None:
    api = make_api([SyncStreamer()])
    async with client(api) as c:
        s = await c.post(
            "/agents/sync-streamer/run", json={"task": "hi"}, headers={**token("a"), **SSE}
        )
    await api.aclose()
    events = parse_sse(s.text)
    assert [e["event"] for e in events] == [
        "start",
        "step",
        "tool_call",
        "output",
        "output",
        "result",
    ]
    assert events[2]["data"] == {
        "name": "lookup",
        "arguments": {"q": "hi"},
        "result": 3,
        "error": None,
    }
    assert events[-1]["data"]["output"] == "Hello, world!"


async def test_a_non_streaming_provider_sends_each_answer_as_one_delta() -> None:
    class Plain:  # complete() only
        name = "plain"

        def __init__(self) -> None:
            self.inner = OfflineProvider(name="plain")

        async def complete(self, messages: Any, **kwargs: Any) -> Any:
            return await self.inner.complete(messages, **kwargs)

        async def aclose(self) -> None:
            return None

    api = make_api(provider=Plain(), prices={"agenthood-offline-1": {"input": "1", "output": "1"}})
    async with client(api) as c:
        s = await c.post(
            "/agents/the-scribe/run",
            json={"task": "a note about the weekly sync"},
            headers={**token("a"), **SSE},
        )
    await api.aclose()
    deltas = [e["data"]["text"] for e in parse_sse(s.text) if e["event"] == "delta"]
    assert deltas == ["[offline] done: a note about the weekly sync"]


async def test_offline_stream_charges_what_was_streamed_when_stopped_early() -> None:
    from agenthood_mw import MemoryScope
    from agenthood_mw.metering import Meter, PriceTable, reset_meter, set_meter

    provider = OfflineProvider()
    prices = PriceTable({"agenthood-offline-1": {"input": "1", "output": "1"}})
    meter = Meter(scope=MemoryScope.operator(user="u"), prices=prices)
    token_ = set_meter(meter)
    try:
        stream = provider.stream(
            [{"role": "system", "content": "a numbered list"}, {"role": "user", "content": "x"}]
        )
        first = await stream.__anext__()
        await stream.aclose()
    finally:
        reset_meter(token_)
    full = await provider.complete(
        [{"role": "system", "content": "a numbered list"}, {"role": "user", "content": "x"}]
    )
    assert first == "[offline]"
    totals = meter.totals
    assert totals.input_tokens == full.usage.input_tokens
    assert totals.output_tokens == 3 < full.usage.output_tokens


def test_encode_event_shape() -> None:
    assert (
        encode_event("step", {"a": "x\ny"}, "7") == b'id: 7\nevent: step\ndata: {"a":"x\\ny"}\n\n'
    )
    assert encode_event("result", b'{"k":1}', None) == b'event: result\ndata: {"k":1}\n\n'
    assert encode_comment("  keep   alive ") == b": keep alive\n\n"
    with pytest.raises(ValueError, match="event"):
        encode_event("a\nb", {}, None)
    with pytest.raises(ValueError, match="id"):
        encode_event("a", {}, "1\r2")


@given(
    st.text(),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=8,
    ),
)
def test_encode_event_round_trips_any_json(name_text: str, data: Any) -> None:
    event = "x" + "".join(ch for ch in name_text if ch not in "\r\n")
    raw = encode_event(event, data, "1").decode()
    assert raw.endswith("\n\n") and raw.count("\n") == 4  # one line per field, whatever data holds
    (parsed,) = parse_sse(raw)
    assert parsed["event"] == event and parsed["data"] == data


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/event-stream", True),
        ("application/json, text/event-stream;q=0.9", True),
        ("TEXT/EVENT-STREAM", True),
        ("text/event-stream; q=0", False),
        ("application/json", False),
        (None, False),
        ("*/*", False),
    ],
)
def test_wants_event_stream(accept: str | None, expected: bool) -> None:
    assert wants_event_stream(accept) is expected


def test_heartbeat_option_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        AgenthoodAPI(agents=demo_agents(), heartbeat=0)


async def test_a_remote_provider_streams_its_deltas_through_failover(
    llm_server: Callable[[str], LLMServer],
) -> None:
    primary = llm_server("primary")
    secondary = llm_server("secondary")
    primary.mode = 503
    chain = ProviderFailover(
        [
            OpenAICompatibleProvider(model="test-model", base_url=primary.url, name="primary"),
            OpenAICompatibleProvider(model="test-model", base_url=secondary.url, name="second"),
        ]
    )
    api = make_api(
        [SpyAgent()], provider=chain, prices={"test-model": {"input": "1", "output": "2"}}
    )
    async with client(api) as c:
        s = await c.post(
            "/agents/spy/run", json={"task": "hello you"}, headers={**token("u1"), **SSE}
        )
        result = parse_sse(s.text)[-1]["data"]
        await api.flush()
        trace = (await c.get(f"/runs/{result['runId']}", headers=token("u1"))).json()
    await api.aclose()
    deltas = [e["data"]["text"] for e in parse_sse(s.text) if e["event"] == "delta"]
    assert deltas == ["secondary ", "says: ", "hello ", "you "]  # as the server streamed them
    assert primary.requests[0]["stream"] is True and secondary.requests[0]["stream"] is True
    assert result["output"] == "secondary says: hello you "
    # the usage the secondary server reported at the end of its stream, priced exactly
    assert result["cost"] == {
        "inputTokens": 31,
        "outputTokens": 9,
        "totalCost": Decimal("0.000049"),
    }
    attempts = [e for e in trace["events"] if e["type"] == "tool_call"]
    assert [(a["arguments"]["provider"], a["result"]["outcome"]) for a in attempts] == [
        ("primary", "failed"),
        ("second", "ok"),
    ]


async def test_a_refusal_before_the_first_delta_is_an_error_event(
    llm_server: Callable[[str], LLMServer],
) -> None:
    primary = llm_server("primary")
    primary.mode = 400
    chain = ProviderFailover(
        [
            OpenAICompatibleProvider(model="test-model", base_url=primary.url, name="primary"),
            OfflineProvider(),
        ]
    )
    api = make_api(
        [SpyAgent()],
        provider=chain,
        prices={
            "test-model": {"input": "1", "output": "2"},
            "agenthood-offline-1": {"input": "1", "output": "1"},
        },
    )
    async with client(api) as c:
        s = await c.post("/agents/spy/run", json={"task": "hi"}, headers={**token("u1"), **SSE})
    await api.aclose()
    events = parse_sse(s.text)
    assert events[-1]["event"] == "error"
    assert events[-1]["data"]["error"]["type"] == "provider_error"


async def test_failover_streams_a_provider_without_stream_in_one_piece() -> None:
    class Plain:
        name = "plain"

        async def complete(self, messages: Any, **kwargs: Any) -> Any:
            return await OfflineProvider(name="plain").complete(messages, **kwargs)

        async def aclose(self) -> None:
            return None

    chain = ProviderFailover([Plain()])
    deltas = [d async for d in chain.stream([{"role": "user", "content": "hi there"}])]
    assert deltas == ["[offline] done: hi there"]


async def test_a_run_timeout_ends_the_stream_with_stop_reason_timeout() -> None:
    api = make_api([Sleeper()], run_timeout=0.1)
    async with client(api) as c:
        s = await c.post("/agents/sleeper/run", json={"task": "x"}, headers={**token("a"), **SSE})
    await api.aclose()
    events = parse_sse(s.text)
    assert events[-1]["event"] == "result"
    assert events[-1]["data"]["stopReason"] == "timeout"
