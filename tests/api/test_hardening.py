"""Hostile input against the agent API (issue 11: #2, #3, #19, #20, #22).

Huge numbers, non-numbers and deep nesting in a run request are refused with a 422 before
anything runs or is charged; ``GET /health`` shares one store check between any number of
concurrent probes and caches it; a 503 health answer carries ``Retry-After``; no demo agent
answers 500 to a task that passes validation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agenthood_mw import MemoryScope
from agenthood_mw.api import AgenthoodAPI, OfflineProvider, RunContext
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import MemoryLedger, MemoryTraceStore

SECRET = "hardening-secret-" + "h" * 40
DEEP = 32_000


class Spy:
    """Counts its runs."""

    name = "spy"
    description = "test agent"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, task: str, ctx: RunContext) -> str:
        self.runs += 1
        ctx.step("work")
        return "done"


def headers(user: str = "usr_h") -> dict[str, str]:
    token = mint_token(secret=SECRET, user_id=user)
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


def make_api(agents: list[Any], **kwargs: Any) -> AgenthoodAPI:
    kwargs.setdefault("memory", InMemoryBackend())
    kwargs.setdefault("ledger", MemoryLedger())
    kwargs.setdefault("traces", MemoryTraceStore())
    api = AgenthoodAPI(agents=agents, provider=OfflineProvider(), **kwargs)
    api.add_middleware(
        AuthMiddleware,
        strategy="jwt",
        secret=SECRET,
        audience="agenthood-api",
        exempt_paths=["/health"],
    )
    return api


def client(api: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")


@pytest.fixture
async def spy_api() -> AsyncIterator[tuple[AgenthoodAPI, Spy]]:
    spy = Spy()
    api = make_api([spy], max_body_bytes=256 * 1024)
    yield api, spy
    await api.aclose()


def _budget(field: str, raw: str) -> bytes:
    return b'{"task": "x", "budget": {"' + field.encode() + b'": ' + raw.encode() + b"}}"


HOSTILE = [
    # huge integers and exponents (OverflowError / decimal.Overflow before)
    (_budget("maxSeconds", "1" + "0" * 400), "invalid_budget"),
    (_budget("maxSeconds", "1e400"), "invalid_budget"),
    (_budget("maxSeconds", "1e-400"), "invalid_budget"),
    (_budget("maxCost", "1e999999999"), "invalid_budget"),
    (_budget("maxCost", '"1e999999999"'), "invalid_budget"),
    (_budget("maxCost", "1" + "0" * 4000), "invalid_budget"),
    (_budget("maxCost", "1e-999999999"), "invalid_budget"),
    (_budget("maxCost", "1e99999999999999999999999"), "invalid_json"),  # beyond a Decimal
    (_budget("maxSeconds", "1e-99999999999999999999999"), "invalid_json"),
    (b'{"task": 1e99999999999999999999999}', "invalid_json"),
    (_budget("maxCost", "1e" + "9" * 5000), "invalid_json"),
    (_budget("maxSteps", "1" + "0" * 400), "invalid_budget"),
    (_budget("maxTokens", "9" * 4000), "invalid_budget"),
    (_budget("maxSteps", "1" + "0" * 5000), "invalid_json"),  # above Python's digit limit
    # strings, booleans, NaN/Infinity, negatives, zero, fractions
    (_budget("maxCost", '" 1_0 "'), "invalid_budget"),
    (_budget("maxCost", '"0.01"'), "invalid_budget"),
    (_budget("maxSeconds", '" 1_0 "'), "invalid_budget"),
    (_budget("maxSteps", '"5"'), "invalid_budget"),
    (_budget("maxSteps", "true"), "invalid_budget"),
    (_budget("maxCost", "false"), "invalid_budget"),
    (_budget("maxSeconds", "true"), "invalid_budget"),
    (_budget("maxCost", "NaN"), "invalid_json"),
    (_budget("maxSeconds", "Infinity"), "invalid_json"),
    (_budget("maxTokens", "-Infinity"), "invalid_json"),
    (_budget("maxCost", "-0.01"), "invalid_budget"),
    (_budget("maxSeconds", "-5"), "invalid_budget"),
    (_budget("maxTokens", "-1"), "invalid_budget"),
    (_budget("maxCost", "0"), "invalid_budget"),
    (_budget("maxTokens", "2.0"), "invalid_budget"),
    (_budget("maxSteps", "[1]"), "invalid_budget"),
    (_budget("maxCost", "{}"), "invalid_budget"),
    # nesting 32 000 deep: the body, the task, the budget (RecursionError before)
    (b"[" * DEEP + b"]" * DEEP, "invalid_json"),
    (b'{"task": ' + b"[" * DEEP + b"]" * DEEP + b"}", "invalid_json"),
    (b'{"task": "x", "budget": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", "invalid_json"),
    (b'{"task": "x", "budget": {"maxCost": ' + b"[" * DEEP + b"]" * DEEP + b"}}", "invalid_json"),
    # control characters in the task (the scribe answered 500 before)
    (b'{"task": "remember a\\u0000b: c"}', "invalid_task"),
    (b'{"task": "x\\u001by"}', "invalid_task"),
    (b'{"task": "x\\u007fy"}', "invalid_task"),
    (b'{"task": "x\\u0085y"}', "invalid_task"),
]


@pytest.mark.parametrize(
    ("body", "error_type"), HOSTILE, ids=[f"{i}-{t}" for i, (_, t) in enumerate(HOSTILE)]
)
async def test_hostile_bodies_are_422_before_anything_runs(
    spy_api: tuple[AgenthoodAPI, Spy],
    body: bytes,
    error_type: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, spy = spy_api
    with caplog.at_level(logging.WARNING):
        async with client(api) as c:
            r = await c.post("/agents/spy/run", content=body, headers=headers())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == error_type
    assert r.json()["error"]["message"]
    assert spy.runs == 0
    assert "x-agenthood-run-id" not in r.headers
    await api.flush()
    scope = MemoryScope.operator(user="usr_h")
    assert await api.ledger.spend(scope) == 0
    assert await api.ledger.report("user") == []
    assert await api.traces.list(scope) == []
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("length", ["1_2", " 12", "+12", "-1", "12.0", "1" * 20, "9" * 5000])
async def test_content_length_is_digits_only(
    spy_api: tuple[AgenthoodAPI, Spy], length: str
) -> None:
    api, spy = spy_api
    body = b'{"task": "x"}'
    async with client(api) as c:
        r = await c.post(
            "/agents/spy/run", content=body, headers={**headers(), "content-length": length}
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request"
    assert spy.runs == 0


async def test_brackets_inside_strings_do_not_count_as_nesting(
    spy_api: tuple[AgenthoodAPI, Spy],
) -> None:
    api, spy = spy_api
    task = "[{" * 3000 + ' \\" ' + "}]" * 3000
    async with client(api) as c:
        r = await c.post(
            "/agents/spy/run", content=f'{{"task": "{task}"}}'.encode(), headers=headers()
        )
    assert r.status_code == 200, r.text
    assert spy.runs == 1


async def test_valid_budget_at_the_bounds_runs(spy_api: tuple[AgenthoodAPI, Spy]) -> None:
    api, spy = spy_api
    assert spy.runs == 0
    budgets = [
        {"maxSteps": 1_000_000, "maxTokens": 1_000_000_000, "maxCost": 1_000_000},
        {"maxCost": 0.000000001, "maxSeconds": 0.001},
        {"maxCost": 1e-9, "maxSeconds": 604800, "maxSteps": 1, "maxTokens": 1},
    ]
    async with client(api) as c:
        for budget in budgets:
            r = await c.post(
                "/agents/spy/run", json={"task": "go", "budget": budget}, headers=headers()
            )
            assert r.status_code == 200, (budget, r.text)
    assert spy.runs == len(budgets)


_json_numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e999999999", "-1e999999999", "1e-999999999", "NaN", "Infinity", "-0"]),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-9, 9), st.integers(-(10**30), 10**30)),
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(["true", "false", "null", "[]", "{}"]),
).map(str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["maxSteps", "maxTokens", "maxCost", "maxSeconds"]), raw=_json_numbers)
def test_any_budget_value_is_a_200_or_a_422(field: str, raw: str) -> None:
    """Whatever the value of a budget field, the answer is a run or a 422, never a 500."""
    spy = Spy()
    api = make_api([spy])

    async def scenario() -> None:
        async with client(api) as c:
            r = await c.post("/agents/spy/run", content=_budget(field, raw), headers=headers())
        assert r.status_code in (200, 422), (raw, r.text)
        if r.status_code == 422:
            assert r.json()["error"]["type"] in ("invalid_budget", "invalid_json")
            assert spy.runs == 0
        await api.aclose()

    asyncio.run(scenario())


# -- GET /health --------------------------------------------------------------------------------
class CountingBackend(InMemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def _get(self, scope: Any, tier: Any, key: str, now: float) -> Any:
        self.reads += 1
        await asyncio.sleep(0.05)  # a store that takes time: probes overlap
        return await super()._get(scope, tier, key, now)


class CountingLedger(MemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def spend(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await super().spend(*args, **kwargs)


class CountingTraces(MemoryTraceStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await super().get(*args, **kwargs)


def counting_api(**kwargs: Any) -> tuple[AgenthoodAPI, CountingBackend, CountingLedger, Any]:
    memory, ledger, traces = CountingBackend(), CountingLedger(), CountingTraces()
    api = make_api([Spy()], memory=memory, ledger=ledger, traces=traces, **kwargs)
    return api, memory, ledger, traces


def _reads(*stores: Any) -> int:
    return sum(s.reads for s in stores)


async def test_200_concurrent_health_probes_cost_three_store_reads() -> None:
    api, *stores = counting_api(health_cache=30)
    async with client(api) as c:
        answers = await asyncio.gather(*(c.get("/health") for _ in range(200)))
        assert {r.status_code for r in answers} == {200}
        assert _reads(*stores) == 3  # one read per store, not 600
        later = [await c.get("/health") for _ in range(50)]  # sequential, within the ttl
    assert {r.status_code for r in later} == {200}
    assert _reads(*stores) == 3
    await api.aclose()


async def test_without_a_cache_concurrent_probes_still_share_one_check() -> None:
    api, *stores = counting_api(health_cache=0)
    async with client(api) as c:
        await asyncio.gather(*(c.get("/health") for _ in range(200)))
        shared = _reads(*stores)
        await c.get("/health")
        await c.get("/health")
    assert shared < 30  # 200 probes in flight share their checks (600 reads before)
    assert _reads(*stores) == shared + 6  # no cache: each later probe checks again
    await api.aclose()


async def test_the_cache_expires() -> None:
    api, *stores = counting_api(health_cache=0.2)
    async with client(api) as c:
        await c.get("/health")
        await c.get("/health")
        assert _reads(*stores) == 3
        await asyncio.sleep(0.3)
        await c.get("/health")
    assert _reads(*stores) == 6
    await api.aclose()


async def test_unhealthy_answer_carries_retry_after() -> None:
    backend = InMemoryBackend()
    api = make_api([Spy()], memory=backend, health_cache=10)
    await backend.close()
    async with client(api) as c:
        r = await c.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    assert r.headers["cache-control"] == "no-store"
    assert 1 <= int(r.headers["retry-after"]) <= 10
    api_no_cache = make_api([Spy()], memory=backend, health_cache=0)
    async with client(api_no_cache) as c:
        r = await c.get("/health")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    await api.aclose()
    await api_no_cache.aclose()


async def test_healthy_answer_has_no_retry_after() -> None:
    api = make_api([Spy()])
    async with client(api) as c:
        r = await c.get("/health")
    assert r.status_code == 200 and "retry-after" not in r.headers
    await api.aclose()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (301, ValueError),
        (float("nan"), ValueError),
        (10**400, ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_health_cache_is_validated(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="health_cache"):
        AgenthoodAPI(agents=[Spy()], provider=OfflineProvider(), health_cache=value)


# -- demo agents over hostile text ----------------------------------------------------------------
_ODD = st.sampled_from(
    [
        "\x00",
        "\x01",
        "\x1b",
        "\x1f",
        "\x7f",
        "\x85",
        "\u2028",
        "\u2029",
        "\ud800",
        "\udfff",
        "\t",
        "\r\n",
        "\u0301",
        "\u200b",
        "\ufeff",
        "\U0001f600",
        "İ",
        "ß",
        ":",
        "=",
        " is ",
        "?",
        "\\",
        '"',
        "%",
        "*",
        "_",
        "/",
        " " * 3,
    ]
)
_TEXT = st.lists(st.one_of(st.text(max_size=20), _ODD), max_size=12).map("".join)
_PREFIX = st.sampled_from(
    [
        "",
        "remember ",
        "remember that ",
        "recall ",
        "what is ",
        "what do you know about ",
        "forget ",
        "list",
        "list notes",
        "what do you know",
    ]
)
_TASKS = st.one_of(
    st.builds(lambda p, t: p + t, _PREFIX, _TEXT),
    st.builds(lambda p, n: p + " ".join(f"w{i}" for i in range(n)), _PREFIX, st.integers(0, 60)),
    st.builds(lambda p, n: p + "é" * n, _PREFIX, st.sampled_from([1000, 15_990])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agent=st.sampled_from(["the-scribe", "the-developer", "the-reviewer"]), task=_TASKS)
@example(agent="the-scribe", task="remember a\x00b: c")  # 500 before (issue 11 #20)
@example(agent="the-scribe", task="recall " + " ".join(f"w{i}" for i in range(20)))  # 500 before
def test_demo_agents_never_answer_500(agent: str, task: str) -> None:
    """Any task that passes validation runs (200); the others are a 422; never a 500."""
    api = make_api(demo_agents(), max_body_bytes=256 * 1024)
    body = json.dumps({"task": task}).encode()  # lone surrogates travel as "\\ud800"

    async def scenario() -> None:
        async with client(api) as c:
            for _ in range(2):  # the second run also reads what the first stored
                r = await c.post(f"/agents/{agent}/run", content=body, headers=headers())
                assert r.status_code in (200, 422), (task, r.text)
                if r.status_code == 422:
                    assert r.json()["error"]["type"] == "invalid_task"
                    break
            listing = await c.post(
                "/agents/the-scribe/run", content=b'{"task": "list"}', headers=headers()
            )
            assert listing.status_code == 200, listing.text
        await api.aclose()

    asyncio.run(scenario())


# -- a provider answering huge numbers (a sibling of issue 11 #1) --------------------------------
@pytest.mark.parametrize("tokens", [10**400, 10**19, 10**12 + 1])
@pytest.mark.parametrize("streaming", [False, True])
async def test_a_provider_reporting_absurd_usage_is_a_protocol_failure(
    llm_server: Any, tokens: int, streaming: bool
) -> None:
    from agenthood_mw._core.failover import FailureKind
    from agenthood_mw.api import OpenAICompatibleProvider, ProviderError

    server = llm_server("primary")
    server.prompt_tokens = tokens
    provider = OpenAICompatibleProvider(model="m", base_url=server.url, name="primary")
    messages = [{"role": "user", "content": "hi"}]

    async def call() -> None:
        if streaming:
            _ = [chunk async for chunk in provider.stream(messages)]
        else:
            await provider.complete(messages)

    try:
        with pytest.raises(ProviderError) as info:
            await call()
    finally:
        await provider.aclose()
    assert info.value.kind is FailureKind.PROTOCOL and info.value.retryable


async def test_a_provider_reporting_the_largest_usage_is_accepted(llm_server: Any) -> None:
    from agenthood_mw.api import OpenAICompatibleProvider

    server = llm_server("primary")
    server.prompt_tokens = 10**12
    provider = OpenAICompatibleProvider(model="m", base_url=server.url, name="primary")
    try:
        completion = await provider.complete([{"role": "user", "content": "hi"}])
    finally:
        await provider.aclose()
    assert completion.usage.input_tokens == 10**12


async def test_openapi_ranges_are_the_enforced_ranges(spy_api: tuple[AgenthoodAPI, Spy]) -> None:
    """The bounds the OpenAPI document publishes are exactly the ones validation applies."""
    api, spy = spy_api
    async with client(api) as c:
        doc = (await c.get("/openapi.json", headers=headers())).json()
        fields = doc["components"]["schemas"]["RunRequest"]["properties"]["budget"]["properties"]
        assert set(fields) == {"maxSteps", "maxTokens", "maxCost", "maxSeconds"}
        for field, schema in fields.items():
            low, high = schema["minimum"], schema["maximum"]
            step = 1 if schema["type"] == "integer" else low / 2
            for value, status in ((low, 200), (high, 200), (low - step, 422), (high + step, 422)):
                r = await c.post(
                    "/agents/spy/run",
                    json={"task": "go", "budget": {field: value}},
                    headers=headers(),
                )
                assert r.status_code == status, (field, value, r.text)
    assert spy.runs == 8


def test_health_probes_against_a_real_server_cost_three_store_reads() -> None:
    """200 probes from 50 client threads over real sockets to uvicorn: 3 store reads."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    from served import free_port

    api, *stores = counting_api(health_cache=30)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        barrier = threading.Barrier(50)
        limits = httpx.Limits(max_connections=50)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, limits=limits) as http:

            def probe(i: int) -> int:
                if i < 50:
                    barrier.wait()  # the first 50 probes leave together
                return http.get("/health").status_code

            with ThreadPoolExecutor(max_workers=50) as pool:
                statuses = list(pool.map(probe, range(200)))
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert statuses == [200] * 200
    assert _reads(*stores) == 3
