"""The demo agents driven directly with a RunContext (no HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agenthood_mw import Identity, MemoryScope
from agenthood_mw.api import DEMO_PRICES, OfflineProvider, RunContext
from agenthood_mw.api.demo import DeveloperAgent, ReviewerAgent, ScribeAgent
from agenthood_mw.api.demo._developer import parse_plan
from agenthood_mw.memory import InMemoryBackend, ScopedMemory
from agenthood_mw.metering import BudgetExhausted, Meter, PriceTable, ThinkingBudget


@pytest.fixture
async def backend() -> AsyncIterator[InMemoryBackend]:
    store = InMemoryBackend()
    yield store
    await store.close()


def context(
    backend: InMemoryBackend, user: str, budget: ThinkingBudget | None = None
) -> RunContext:
    identity = Identity(user_id=user)
    scope = MemoryScope.for_identity(identity)
    meter = Meter(prices=PriceTable(DEMO_PRICES), scope=scope, thinking_budget=budget)
    return RunContext(
        identity=identity,
        scope=scope,
        memory=ScopedMemory(backend, scope),
        meter=meter,
        thinking_budget=budget or ThinkingBudget(),
        provider=OfflineProvider(),
        run_id=meter.run_id,
        agent="test",
    )


async def test_scribe_commands(backend: InMemoryBackend) -> None:
    scribe = ScribeAgent()

    async def say(task: str, user: str = "u1") -> str:
        return await scribe.run(task, context(backend, user))

    assert await say("remember that the deploy day is Tuesday") == "Noted: the deploy day = Tuesday"
    assert await say("remember editor = vim") == "Noted: editor = vim"
    assert await say("what is the deploy day?") == "From your notes: the deploy day = Tuesday"
    assert await say("recall deploy") == "From your notes: the deploy day = Tuesday"
    assert await say("recall editor", user="u2") == "I have no notes about 'editor' for you."
    assert await say("forget editor") == "Forgot editor."
    assert await say("forget editor") == "I had no note called editor."
    assert await say("list") == "Your notes:\n- the deploy day = Tuesday"
    summary = await say("we freeze deploys on fridays")
    assert summary.startswith("Noted as 'we freeze deploys on fridays': [offline]")
    assert await say("list", user="u2") == "I have no notes for you yet."


async def test_reviewer_reads_only_the_callers_history(backend: InMemoryBackend) -> None:
    reviewer = ReviewerAgent()
    mine = ScopedMemory(backend, MemoryScope.operator(user="u1"))
    await mine.episodic.append(
        {
            "type": "run",
            "agent": "the-scribe",
            "task": "t1",
            "stopReason": "completed",
            "output": "o",
        }
    )
    assert await reviewer.run("ok?", context(backend, "u2")) == (
        "No earlier runs of yours to review yet."
    )
    ctx = context(backend, "u1")
    review = await reviewer.run("ok?", ctx)
    assert review.startswith("Reviewed 1 earlier run(s) of yours:\n- the-scribe: 't1'")
    assert ctx.meter.totals.model_calls == 1


async def test_developer_plans_and_stops_at_its_budget(backend: InMemoryBackend) -> None:
    developer = DeveloperAgent()
    ctx = context(backend, "u1")
    output = await developer.run("add a health check", ctx)
    lines = output.splitlines()
    total = int(lines[0].split(" of ")[1].split()[0])
    assert lines[0].startswith(f"Completed {total} of {total} planned step(s)")
    assert ctx.meter.totals.steps == total + 1 and ctx.meter.totals.model_calls == total + 1
    plan = await ctx.memory.project.get_value(f"plans/{ctx.run_id}")
    assert plan["task"] == "add a health check" and len(plan["steps"]) == total

    limited = context(backend, "u1", ThinkingBudget(max_steps=2))
    with pytest.raises(BudgetExhausted) as info:
        await developer.run("add a health check", limited)
    assert info.value.reason == "budget_exhausted:steps"
    assert limited.partial_output.startswith("Completed 1 of ")


def test_parse_plan() -> None:
    assert parse_plan("[offline] 1. a\n2) b\n- c\nnoise") == ["a", "b", "c"]
    assert parse_plan("just do it") == ["just do it"]
    assert parse_plan("") == []
    assert len(parse_plan("\n".join(f"{i}. s" for i in range(20)))) == 8
