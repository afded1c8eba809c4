"""AgenthoodAPI over ASGI: the seed's response, bad input, traces, health, OpenAPI, agents."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import unicodedata
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenthood_mw import MemoryScope
from agenthood_mw.api import (
    AgenthoodAPI,
    AgentResult,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderFailover,
    RunContext,
)
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import MemoryLedger, MemoryTraceStore, ThinkingBudget

if TYPE_CHECKING:
    from .conftest import LLMServer

SECRET = "test-secret-" + "x" * 40
SEED_KEYS = {
    "agent",
    "userId",
    "output",
    "steps",
    "cost",
    "memoryScope",
    "runId",
    "stopReason",
}


class SpyAgent:
    """Counts its runs; writes a fact and calls the provider once."""

    name = "spy"
    description = "test agent"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, task: str, ctx: RunContext) -> str:
        self.runs += 1
        ctx.step("work")
        await ctx.memory.facts.put("last", task)
        completion = await ctx.complete([{"role": "user", "content": task}])
        return completion.text


def token(user: str, **kwargs: Any) -> dict[str, str]:
    return {"authorization": "Bearer " + mint_token(secret=SECRET, user_id=user, **kwargs)}


def make_api(agents: list[Any] | None = None, **kwargs: Any) -> AgenthoodAPI:
    kwargs.setdefault("memory", {"isolation": "per-user", "backend": InMemoryBackend()})
    kwargs.setdefault("provider", OfflineProvider())
    kwargs.setdefault("ledger", MemoryLedger())
    kwargs.setdefault("traces", MemoryTraceStore())
    api = AgenthoodAPI(agents=agents if agents is not None else demo_agents(), **kwargs)
    api.add_middleware(
        AuthMiddleware,
        strategy="jwt",
        secret=SECRET,
        audience="agenthood-api",
        exempt_paths=["/health", "/openapi.json"],
    )
    return api


def client(api: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")


@pytest.fixture
async def spy_api() -> AsyncIterator[tuple[AgenthoodAPI, SpyAgent, OfflineProvider]]:
    spy = SpyAgent()
    provider = OfflineProvider()
    api = make_api([spy, *demo_agents()], provider=provider)
    yield api, spy, provider
    await api.aclose()


async def test_run_answers_the_seed_shape(
    spy_api: tuple[AgenthoodAPI, SpyAgent, OfflineProvider],
) -> None:
    api, _, _ = spy_api
    async with client(api) as c:
        r = await c.post(
            "/agents/the-developer/run",
            json={"task": "refactor the auth middleware to use async/await"},
            headers=token("usr_8f3a"),
        )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == SEED_KEYS
    assert list(body) == [
        "agent",
        "userId",
        "output",
        "steps",
        "cost",
        "memoryScope",
        "runId",
        "stopReason",
    ]
    assert body["agent"] == "the-developer"
    assert body["userId"] == "usr_8f3a"
    assert body["memoryScope"] == "usr_8f3a"
    assert body["stopReason"] == "completed"
    assert body["runId"] == r.headers["x-agenthood-run-id"]
    assert isinstance(body["steps"], int) and body["steps"] >= 4
    assert set(body["cost"]) == {"inputTokens", "outputTokens", "totalCost"}
    assert body["cost"]["inputTokens"] > 0 and body["cost"]["outputTokens"] > 0
    # the cost is the demo price exactly: 0.75 $/M input, 2.00 $/M output
    expected = (
        Decimal(body["cost"]["inputTokens"]) * Decimal("0.75")
        + Decimal(body["cost"]["outputTokens"]) * Decimal("2.00")
    ) / 1_000_000
    text_cost = json.loads(r.text, parse_float=Decimal)["cost"]["totalCost"]
    assert text_cost == expected
    assert re.search(r'"totalCost":0\.\d+}', r.text)  # a plain decimal, never 1.8e-03
    await api.flush()
    assert await api.ledger.spend(MemoryScope.operator(user="usr_8f3a")) == expected


async def test_tenant_scoped_memory_label() -> None:
    api = make_api()
    async with client(api) as c:
        r = await c.post(
            "/agents/the-scribe/run",
            json={"task": "remember the colour: blue"},
            headers=token("usr_1", tenant="acme"),
        )
    assert r.status_code == 200
    assert r.json()["memoryScope"] == "acme/usr_1"
    await api.aclose()


async def test_list_agents_and_openapi(
    spy_api: tuple[AgenthoodAPI, SpyAgent, OfflineProvider],
) -> None:
    api, _, _ = spy_api
    async with client(api) as c:
        agents = (await c.get("/agents", headers=token("u1"))).json()["agents"]
        doc = (await c.get("/openapi.json")).json()
        unauthenticated = await c.get("/agents")
    assert [a["name"] for a in agents] == ["spy", "the-developer", "the-reviewer", "the-scribe"]
    assert all(a["description"] for a in agents)
    assert unauthenticated.status_code == 401
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    run = doc["paths"]["/agents/{name}/run"]["post"]
    assert run["security"] == [{"bearerAuth": []}]
    assert run["parameters"][0]["schema"]["enum"] == [a["name"] for a in agents]
    assert doc["paths"]["/health"]["get"]["security"] == []


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "error_type"),
    [
        ("/agents/nobody/run", b'{"task": "x"}', {}, 404, "unknown_agent"),
        ("/agents/spy/run", b"{}", {}, 422, "invalid_task"),
        ("/agents/spy/run", b'{"task": ""}', {}, 422, "invalid_task"),
        ("/agents/spy/run", b'{"task": "   \\n"}', {}, 422, "invalid_task"),
        ("/agents/spy/run", b'{"task": 42}', {}, 422, "invalid_task"),
        ("/agents/spy/run", b'{"task": null}', {}, 422, "invalid_task"),
        ("/agents/spy/run", b'["task"]', {}, 422, "invalid_request"),
        ("/agents/spy/run", b'"task"', {}, 422, "invalid_request"),
        ("/agents/spy/run", b'{"task": "x", "extra": 1}', {}, 422, "invalid_request"),
        ("/agents/spy/run", b'{"task": "x"', {}, 422, "invalid_json"),
        ("/agents/spy/run", b"\xff\xfe", {}, 422, "invalid_json"),
        ("/agents/spy/run", b'{"task": "x", "budget": 3}', {}, 422, "invalid_budget"),
        ("/agents/spy/run", b'{"task":"x","budget":{"maxSteps":0}}', {}, 422, "invalid_budget"),
        ("/agents/spy/run", b'{"task":"x","budget":{"maxSteps":1.5}}', {}, 422, "invalid_budget"),
        ("/agents/spy/run", b'{"task":"x","budget":{"steps":2}}', {}, 422, "invalid_budget"),
        ("/agents/spy/run", b'{"task":"x","budget":{"maxCost":"lots"}}', {}, 422, "invalid_budget"),
        (
            "/agents/spy/run",
            b'{"task": "x"}',
            {"content-type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            "/agents/spy/run",
            b"task=x",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        ("/agents/spy/run", b'{"task": "x"}', {"content-type": ""}, 415, "unsupported_media_type"),
    ],
)
async def test_bad_input_is_refused_and_nothing_runs_or_is_charged(
    spy_api: tuple[AgenthoodAPI, SpyAgent, OfflineProvider],
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    error_type: str,
) -> None:
    api, spy, provider = spy_api
    all_headers = {"content-type": "application/json", **token("usr_a"), **headers}
    async with client(api) as c:
        r = await c.post(path, content=content, headers=all_headers)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == error_type and error["message"]
    assert "Traceback" not in r.text
    assert spy.runs == 0 and provider.calls == 0
    assert "x-agenthood-run-id" not in r.headers  # refused before any meter existed
    await api.flush()
    assert await api.ledger.spend(MemoryScope.operator(user="usr_a")) == 0
    assert await api.ledger.report("user") == []
    assert await api.traces.list(MemoryScope.operator(user="usr_a")) == []
    assert (await api.memory_backend.export(MemoryScope.operator(user="usr_a"))).to_dict()[
        "events"
    ] == []


async def test_oversized_task_and_body(
    spy_api: tuple[AgenthoodAPI, SpyAgent, OfflineProvider],
) -> None:
    api, spy, _ = spy_api
    async with client(api) as c:
        long_task = await c.post(
            "/agents/spy/run", json={"task": "x" * 16_001}, headers=token("usr_a")
        )
        big_body = await c.post(
            "/agents/spy/run", json={"task": "x" * 70_000}, headers=token("usr_a")
        )

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted while read
            yield b'{"task": "'
            for _ in range(100):
                yield b"y" * 1024
            yield b'"}'

        streamed = await c.post(
            "/agents/spy/run",
            content=chunks(),
            headers={"content-type": "application/json", **token("usr_a")},
        )
    assert long_task.status_code == 422
    assert long_task.json()["error"]["type"] == "invalid_task"
    assert big_body.status_code == 413
    assert big_body.json()["error"]["type"] == "payload_too_large"
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413
    assert spy.runs == 0


async def test_unauthenticated_without_auth_middleware_is_401() -> None:
    spy = SpyAgent()
    api = AgenthoodAPI(agents=[spy], provider=OfflineProvider())
    async with client(api) as c:
        r = await c.post("/agents/spy/run", json={"task": "hi"})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert spy.runs == 0
    await api.aclose()


async def test_required_scopes() -> None:
    spy = SpyAgent()
    api = make_api([spy], required_scopes=["agents:run"])
    async with client(api) as c:
        refused = await c.post("/agents/spy/run", json={"task": "hi"}, headers=token("u1"))
        allowed = await c.post(
            "/agents/spy/run", json={"task": "hi"}, headers=token("u1", scopes=["agents:run"])
        )
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "insufficient_scope"
    assert allowed.status_code == 200
    assert spy.runs == 1
    await api.aclose()


async def test_trace_is_visible_to_its_owner_only(
    spy_api: tuple[AgenthoodAPI, SpyAgent, OfflineProvider],
) -> None:
    api, _, _ = spy_api
    async with client(api) as c:
        run = await c.post("/agents/spy/run", json={"task": "hello"}, headers=token("alice"))
        run_id = run.json()["runId"]
        await api.flush()
        mine = await c.get(f"/runs/{run_id}", headers=token("alice"))
        theirs = await c.get(f"/runs/{run_id}", headers=token("bob"))
        other_tenant = await c.get(f"/runs/{run_id}", headers=token("alice", tenant="t2"))
        unknown = await c.get("/runs/0123456789abcdef", headers=token("alice"))
    assert mine.status_code == 200
    trace = mine.json()
    assert trace["runId"] == run_id and trace["agent"] == "spy"
    assert trace["stopReason"] == "completed"
    kinds = [e["type"] for e in trace["events"]]
    assert "step" in kinds and "model_call" in kinds
    for response in (theirs, other_tenant, unknown):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "unknown_run"


async def test_memory_is_isolated_between_users() -> None:
    api = make_api()
    async with client(api) as c:
        for user, colour in (("usr_a", "blue"), ("usr_b", "green")):
            r = await c.post(
                "/agents/the-scribe/run",
                json={"task": f"remember favourite colour: {colour}"},
                headers=token(user),
            )
            assert r.status_code == 200
        a = await c.post(
            "/agents/the-scribe/run",
            json={"task": "recall favourite colour"},
            headers=token("usr_a"),
        )
        b = await c.post("/agents/the-scribe/run", json={"task": "list"}, headers=token("usr_b"))
        c_ = await c.post(
            "/agents/the-scribe/run",
            json={"task": "recall favourite colour"},
            headers=token("usr_c"),
        )
        review = await c.post(
            "/agents/the-reviewer/run", json={"task": "what did I do?"}, headers=token("usr_c")
        )
    assert a.json()["output"] == "From your notes: favourite colour = blue"
    assert "green" in b.json()["output"] and "blue" not in b.json()["output"]
    assert "no notes" in c_.json()["output"]
    assert c_.json()["memoryScope"] == "usr_c"
    # usr_c's history holds only its own scribe run
    assert "Reviewed 1 earlier run(s)" in review.json()["output"]
    assert "favourite colour: blue" not in review.json()["output"]
    await api.aclose()


async def test_request_budget_lowers_but_never_raises() -> None:
    class Looper:
        name = "looper"
        description = "loops"
        budget = ThinkingBudget(max_steps=3)

        async def run(self, task: str, ctx: RunContext) -> str:
            for i in range(100):
                ctx.partial_output = f"did {i} steps"
                ctx.step("loop", i=i)
            return "never"

    api = make_api([Looper()])
    async with client(api) as c:
        lowered = await c.post(
            "/agents/looper/run",
            json={"task": "go", "budget": {"maxSteps": 2}},
            headers=token("u1"),
        )
        raised = await c.post(
            "/agents/looper/run",
            json={"task": "go", "budget": {"maxSteps": 50}},
            headers=token("u1"),
        )
    assert lowered.json()["stopReason"] == "budget_exhausted:steps"
    assert lowered.json()["steps"] == 2 and lowered.json()["output"] == "did 2 steps"
    assert raised.json()["stopReason"] == "budget_exhausted:steps"
    assert raised.json()["steps"] == 3
    await api.aclose()


async def test_token_budget_caps_model_calls() -> None:
    provider = OfflineProvider()
    api = make_api(provider=provider)
    async with client(api) as c:
        r = await c.post(
            "/agents/the-developer/run",
            json={"task": "write the release notes", "budget": {"maxTokens": 120}},
            headers=token("u1"),
        )
    body = r.json()
    assert body["stopReason"] == "budget_exhausted:tokens"
    assert body["cost"]["inputTokens"] + body["cost"]["outputTokens"] >= 120
    assert provider.calls < 6
    await api.aclose()


async def test_sync_agent_runs_in_a_thread() -> None:
    loop_thread = threading.get_ident()

    class SyncAgent:
        name = "sync"
        description = "a plain def agent"
        thread = 0

        def run(self, task: str, ctx: RunContext) -> AgentResult:
            SyncAgent.thread = threading.get_ident()
            ctx.step("store")
            ctx.call(ctx.memory.facts.put, "task", task)
            stored = ctx.call(ctx.memory.facts.get_value, "task")
            completion = ctx.call(ctx.complete, [{"role": "user", "content": task}])
            return AgentResult(output=f"{stored} / {completion.provider}", data={"ok": True})

    api = make_api([SyncAgent()])
    async with client(api) as c:
        r = await c.post("/agents/sync/run", json={"task": "threaded"}, headers=token("u1"))
    assert r.status_code == 200
    assert r.json()["output"] == "threaded / offline"
    assert r.json()["cost"]["inputTokens"] > 0
    assert SyncAgent.thread not in (0, loop_thread)
    await api.aclose()


async def test_agent_crash_is_a_clean_500() -> None:
    class Broken:
        name = "broken"
        description = "raises"

        async def run(self, task: str, ctx: RunContext) -> str:
            raise RuntimeError("secret internal detail")

    api = make_api([Broken()])
    async with client(api) as c:
        r = await c.post("/agents/broken/run", json={"task": "x"}, headers=token("u1"))
        await api.flush()
        trace = await api.traces.get(
            MemoryScope.operator(user="u1"), r.headers["x-agenthood-run-id"]
        )
    assert r.status_code == 500
    assert r.json() == {
        "error": {"type": "agent_error", "message": "the agent failed; see the run trace"}
    }
    assert "secret internal detail" not in r.text
    assert trace is not None and "secret internal detail" in trace["error"]
    await api.aclose()


async def test_run_timeout_stops_the_run() -> None:
    class Slow:
        name = "slow"
        description = "sleeps"

        async def run(self, task: str, ctx: RunContext) -> str:
            ctx.partial_output = "started"
            await asyncio.sleep(5)
            return "finished"

    api = make_api([Slow()], run_timeout=0.2)
    async with client(api) as c:
        r = await c.post("/agents/slow/run", json={"task": "x"}, headers=token("u1"))
    assert r.status_code == 200
    assert r.json()["stopReason"] == "timeout" and r.json()["output"] == "started"
    await api.aclose()


async def test_failover_attempts_are_in_the_trace(
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
    spy = SpyAgent()
    api = make_api(
        [spy], provider=chain, prices={"test-model": {"input": "1.00", "output": "2.00"}}
    )
    async with client(api) as c:
        r = await c.post("/agents/spy/run", json={"task": "hello"}, headers=token("u1"))
        await api.flush()
        trace = (await c.get(f"/runs/{r.json()['runId']}", headers=token("u1"))).json()
    body = r.json()
    assert body["output"] == "secondary says: hello"
    # usage reported by the secondary server, priced at 1 $/M in and 2 $/M out
    assert body["cost"] == {"inputTokens": 31, "outputTokens": 9, "totalCost": 0.000049}
    attempts = [e for e in trace["events"] if e["type"] == "tool_call"]
    assert [(a["arguments"]["provider"], a["result"]["outcome"]) for a in attempts] == [
        ("primary", "failed"),
        ("second", "ok"),
    ]
    assert attempts[0]["result"]["status"] == 503
    await api.aclose()


@pytest.mark.parametrize(
    ("mode", "status", "error_type"),
    [(500, 503, "provider_unavailable"), (400, 502, "provider_error")],
)
async def test_provider_failures_map_to_clear_errors(
    llm_server: Callable[[str], LLMServer], mode: int, status: int, error_type: str
) -> None:
    server = llm_server("only")
    server.mode = mode
    chain = ProviderFailover(
        [OpenAICompatibleProvider(model="m", base_url=server.url, name="only")],
        failure_threshold=1,
        cooldown=60,
    )
    api = make_api([SpyAgent()], provider=chain)
    async with client(api) as c:
        r = await c.post("/agents/spy/run", json={"task": "hello"}, headers=token("u1"))
    assert r.status_code == status
    assert r.json()["error"]["type"] == error_type
    if status == 503:
        assert 55 <= int(r.headers["retry-after"]) <= 60
    await api.aclose()


async def test_health_checks_the_stores() -> None:
    backend = InMemoryBackend()
    api = make_api(memory=backend, health_cache=0)
    async with client(api) as c:
        ok = await c.get("/health")
        await backend.close()
        down = await c.get("/health")
    assert ok.status_code == 200
    assert ok.json() == {
        "status": "ok",
        "checks": {"memory": "ok", "ledger": "ok", "traces": "ok"},
    }
    assert down.status_code == 503
    assert down.json()["checks"]["memory"] == "unavailable"
    await api.aclose()


async def test_mounts_inside_fastapi() -> None:
    from fastapi import FastAPI

    spy = SpyAgent()
    api = make_api([spy])
    outer = FastAPI()
    outer.mount("/v1", api)
    async with client(outer) as c:
        r = await c.post("/v1/agents/spy/run", json={"task": "mounted"}, headers=token("u1"))
        listed = await c.get("/v1/agents", headers=token("u1"))
    assert r.status_code == 200 and r.json()["agent"] == "spy"
    assert listed.json()["agents"][0]["name"] == "spy"
    await api.aclose()


@pytest.mark.parametrize(
    ("kwargs", "error", "option"),
    [
        ({"agents": []}, ValueError, "agents"),
        ({"agents": "spy"}, TypeError, "agents"),
        ({"agents": [SpyAgent(), SpyAgent()]}, ValueError, "duplicate"),
        ({"memory": {"isolation": "shared"}}, ValueError, "isolation"),
        ({"memory": {"backend": "memory://", "ttl": 3}}, ValueError, "memory"),
        ({"memory": 42}, TypeError, "memory"),
        ({"provider": "openai"}, TypeError, "provider"),
        ({"max_body_bytes": 0}, ValueError, "max_body_bytes"),
        ({"max_task_chars": 1.5}, TypeError, "max_task_chars"),
        ({"run_timeout": -1}, ValueError, "run_timeout"),
        ({"thinking_budget": {"max_steps": 3}}, TypeError, "thinking_budget"),
        ({"required_scopes": "agents:run"}, TypeError, "required_scopes"),
        ({"meter_options": {"ledger": "memory://"}}, ValueError, "meter_options"),
        ({"meter_options": {"budgets": "lots"}}, TypeError, "budgets"),
    ],
)
def test_configuration_errors_name_the_option(
    kwargs: dict[str, Any], error: type[Exception], option: str
) -> None:
    kwargs.setdefault("agents", [SpyAgent()])
    with pytest.raises(error, match=option):
        AgenthoodAPI(**kwargs)


def test_agent_names_are_validated() -> None:
    class Bad:
        name = "Has Spaces"
        description = ""

        async def run(self, task: str, ctx: RunContext) -> str:
            return ""

    with pytest.raises(ValueError, match=r"agents\[0\]\.name"):
        AgenthoodAPI(agents=[Bad()])


_user_ids = st.text(
    alphabet=st.characters(categories=["L", "N"], include_characters="_-.@/:%*?["),
    min_size=1,
    max_size=24,
).filter(lambda s: unicodedata.is_normalized("NFC", s))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    users=st.lists(_user_ids, min_size=2, max_size=3, unique=True),
    values=st.lists(
        st.text(alphabet="abcdefghij", min_size=8, max_size=8), min_size=3, unique=True
    ),
)
def test_no_user_ever_reads_another_users_memory(users: list[str], values: list[str]) -> None:
    """Whatever the ids (including glob and LIKE characters, a user id that is a prefix of
    another), a user's listing and recall contain only what that user stored."""
    api = make_api()

    async def scenario() -> None:
        async with client(api) as c:
            for user, value in zip(users, values, strict=False):
                r = await c.post(
                    "/agents/the-scribe/run",
                    json={"task": f"remember secret: {value}"},
                    headers=token(user),
                )
                assert r.status_code == 200, r.text
            for i, user in enumerate(users):
                listing = await c.post(
                    "/agents/the-scribe/run", json={"task": "list"}, headers=token(user)
                )
                output = listing.json()["output"]
                assert listing.json()["userId"] == user
                assert values[i] in output
                for j, other in enumerate(values[: len(users)]):
                    if j != i:  # same length, all distinct: never a substring of another
                        assert other not in output
        await api.aclose()

    asyncio.run(scenario())


def test_provider_models_must_be_priced() -> None:
    provider = ProviderFailover(
        [
            OpenAICompatibleProvider(model="gpt-4o", base_url="http://127.0.0.1:9/v1", name="a"),
            OfflineProvider(),
        ]
    )
    with pytest.raises(ValueError, match=r"prices: no price for model 'gpt-4o'"):
        AgenthoodAPI(
            agents=[SpyAgent()], provider=provider, prices={"o": {"input": "1", "output": "1"}}
        )
    api = AgenthoodAPI(
        agents=[SpyAgent()],
        provider=provider,
        prices={
            "gpt-4o": {"input": "2.5", "output": "10"},
            "agenthood-offline-1": {"input": "0", "output": "0"},
        },
    )
    assert api.prices.price("gpt-4o").input > 0


async def test_unknown_paths_and_methods_are_json_errors() -> None:
    api = make_api()
    async with client(api) as c:
        missing = await c.get("/nowhere", headers=token("u1"))
        wrong_method = await c.get("/agents/the-scribe/run", headers=token("u1"))
    assert missing.status_code == 404
    assert missing.json() == {"error": {"type": "not_found", "message": "no such endpoint"}}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "POST"
    await api.aclose()


async def test_trace_of_a_run_that_just_finished_is_found() -> None:
    api = make_api()
    async with client(api) as c:
        for i in range(20):  # no explicit flush: the endpoint waits for the writer on a miss
            run = await c.post(
                "/agents/the-scribe/run", json={"task": f"remember n: {i}"}, headers=token("u")
            )
            trace = await c.get(f"/runs/{run.json()['runId']}", headers=token("u"))
            assert trace.status_code == 200
    await api.aclose()


async def test_concurrent_runs_of_many_users_stay_isolated() -> None:
    """40 runs of 8 users interleaved on one event loop (and sync agents in threads): every
    response, memory and ledger entry belongs to the run's own caller."""

    class Echo:
        name = "echo"
        description = "stores the task, yields, then reads every fact back"

        async def run(self, task: str, ctx: RunContext) -> str:
            ctx.step("store")
            await ctx.memory.facts.put(task, ctx.identity.user_id)
            await asyncio.sleep(0.001)  # let other users' runs interleave
            page = await ctx.memory.facts.list(limit=100)
            await ctx.complete([{"role": "user", "content": task}])
            return ",".join(sorted(r.value for r in page))

    api = make_api([Echo()])
    users = [f"usr_{i}" for i in range(8)]

    async def one(user: str, n: int) -> httpx.Response:
        return await c.post(
            "/agents/echo/run", json={"task": f"{user}-task-{n}"}, headers=token(user)
        )

    async with client(api) as c:
        responses = await asyncio.gather(*(one(u, n) for n in range(5) for u in users))
    for response in responses:
        body = response.json()
        assert response.status_code == 200
        assert set(body["output"].split(",")) == {body["userId"]}
        assert body["memoryScope"] == body["userId"]
    await api.flush()
    report = {s.scope.user: s for s in await api.ledger.report("user") if s.scope}
    assert set(report) == set(users)
    assert all(s.calls == 5 for s in report.values())
    await api.aclose()
