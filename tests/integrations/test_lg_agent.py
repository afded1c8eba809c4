"""LangGraphAgent: a compiled graph served by AgenthoodAPI, one thread per user and
conversation; over real HTTP (the example under uvicorn) and in-process (budgets, steps)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest

pytest.importorskip("langgraph.graph")

from langgraph.graph import END, START, StateGraph
from served import free_port, served

from agenthood_mw import Identity, MemoryScope
from agenthood_mw.api import AgenthoodAPI
from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.integrations.langgraph import LangGraphAgent, ScopedCheckpointer
from agenthood_mw.memory import InMemoryBackend
from agenthood_mw.metering import ThinkingBudget

ROOT = Path(__file__).resolve().parents[2]
SECRET = "langgraph-example-secret-" + "x" * 32
AUDIENCE = "agenthood-api"

pytestmark = pytest.mark.timeout(90)


def bearer(user: str) -> dict[str, str]:
    token = mint_token(secret=SECRET, user_id=user, audience=AUDIENCE)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def example() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "AGENTHOOD_JWT_SECRET": SECRET, "MEMORY_URL": "memory://"}
    command = [sys.executable, str(ROOT / "examples" / "langgraph_agent.py"), "--port", str(port)]
    with served(command, port=port, env=env, cwd=ROOT, what="langgraph_agent") as (base, _):
        yield base


def say(http: httpx.Client, user: str, task: str, conversation: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"task": task}
    if conversation is not None:
        body["conversationId"] = conversation
    r = http.post("/agents/notes/run", json=body, headers=bearer(user))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_two_users_over_http_each_keep_their_own_thread(example: str) -> None:
    with httpx.Client(base_url=example, timeout=10) as http:
        first = say(http, "alice", "alpha-secret", "plans")
        assert first["output"] == "Noted: alpha-secret."
        assert first["steps"] == 1
        # Bob presents the same conversation id: his thread is empty, never Alice's.
        bob = say(http, "bob", "bravo", "plans")
        assert bob["output"] == "Noted: bravo."
        assert "alpha" not in str(bob)
        again = say(http, "alice", "second", "plans")
        assert again["output"] == "Noted: second. Earlier you said: alpha-secret."
        bob_again = say(http, "bob", "more", "plans")
        assert bob_again["output"] == "Noted: more. Earlier you said: bravo."
        # Another conversation of the same user is another thread.
        assert say(http, "alice", "fresh", "other")["output"] == "Noted: fresh."
        assert say(http, "alice", "no-id", None)["output"] == "Noted: no-id."
        # Costs follow the caller: each run is charged to whoever made it.
        for reply in (first, bob, again, bob_again):
            assert Decimal(reply["cost"]["totalCost"]) > 0
        assert first["userId"] == "alice"
        assert bob["userId"] == "bob"
        assert first["memoryScope"] != bob["memoryScope"]
        bad = http.post(
            "/agents/notes/run",
            json={"task": "x", "conversationId": "\n"},
            headers=bearer("alice"),
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["type"] == "invalid_request"


class Counter(TypedDict):
    n: int


def looping_graph() -> Any:
    graph = StateGraph(Counter)
    graph.add_node("tick", lambda s: {"n": s["n"] + 1})
    graph.add_edge(START, "tick")
    graph.add_conditional_edges("tick", lambda s: "tick" if s["n"] < 100 else END)
    return graph.compile()


def api_with(agent: LangGraphAgent, backend: InMemoryBackend) -> AgenthoodAPI:
    api = AgenthoodAPI(agents=[agent], memory={"isolation": "per-user", "backend": backend})
    api.add_middleware(
        AuthMiddleware, strategy="jwt", secret=SECRET, algorithms=["HS256"], audience=AUDIENCE
    )
    return api


async def test_steps_and_budget_map_onto_the_graph() -> None:
    backend = InMemoryBackend()
    agent = LangGraphAgent(
        looping_graph(),
        name="loop",
        checkpointer=ScopedCheckpointer(backend),
        make_input=lambda task, ctx: {"n": int(task)},
        make_output=lambda values: str(values["n"]),
        budget=ThinkingBudget(max_steps=5),
    )
    transport = httpx.ASGITransport(app=api_with(agent, backend))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        done = await http.post("/agents/loop/run", json={"task": "97"}, headers=bearer("ann"))
        assert done.status_code == 200, done.text
        assert done.json()["output"] == "100"
        assert done.json()["steps"] == 3
        assert done.json()["stopReason"] == "completed"
        stopped = await http.post(
            "/agents/loop/run",
            json={"task": "0", "conversationId": "long", "budget": {"maxSteps": 3}},
            headers=bearer("ann"),
        )
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["stopReason"] == "budget_exhausted:steps"
        assert stopped.json()["steps"] == 3
    # The thread lives in ann's scope under this agent's name and the conversation id.
    ann = MemoryScope.for_identity(Identity(user_id="ann"))
    saver = ScopedCheckpointer(backend, scope=ann)
    state = await saver.aget_tuple({"configurable": {"thread_id": "loop/default"}})
    assert state is not None
    assert state.checkpoint["channel_values"]["n"] == 100
    other = ScopedCheckpointer(backend, scope=MemoryScope.for_identity(Identity(user_id="bo")))
    assert await other.aget_tuple({"configurable": {"thread_id": "loop/default"}}) is None


def test_construction_errors_name_the_option() -> None:
    graph = looping_graph()
    backend = InMemoryBackend()
    with pytest.raises(TypeError, match="graph"):
        LangGraphAgent(object(), name="x", checkpointer=ScopedCheckpointer(backend))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="checkpointer"):
        LangGraphAgent(graph, name="x", checkpointer=object())  # type: ignore[arg-type]
    fixed = ScopedCheckpointer(backend, scope=MemoryScope.operator(user="ops"))
    with pytest.raises(ValueError, match="fixed scope"):
        LangGraphAgent(graph, name="x", checkpointer=fixed)
    with pytest.raises(ValueError, match="name"):
        LangGraphAgent(graph, name="", checkpointer=ScopedCheckpointer(backend))


def test_the_graph_gets_the_scoped_checkpointer_and_the_store() -> None:
    from langgraph.store.memory import InMemoryStore

    graph = looping_graph()
    saver = ScopedCheckpointer(InMemoryBackend())
    store = InMemoryStore()
    agent = LangGraphAgent(graph, name="loop/v1", checkpointer=saver, store=store)
    assert agent.graph.checkpointer is saver
    assert agent.graph.store is store
    assert graph.checkpointer is None  # the caller's graph is left as it was
    assert agent.thread_id("c-1") == "loop%2Fv1/c-1"
    assert agent.thread_id(None) == "loop%2Fv1/default"
