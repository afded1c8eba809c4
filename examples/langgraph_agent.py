"""A LangGraph agent served to many users: each user's threads live in their own MemoryScope.

Needs ``pip install 'agenthood-mw[langgraph,serve]'``. Run it and talk to it::

    export AGENTHOOD_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
    python examples/langgraph_agent.py --port 3000
    JWT=$(agenthood token --user usr_8f3a)
    curl -X POST http://127.0.0.1:3000/agents/notes/run -H "Authorization: Bearer $JWT" \\
      -H "Content-Type: application/json" \\
      -d '{"task": "remember the launch is on Friday", "conversationId": "launch"}'

The graph is ordinary LangGraph code: it never sees a user id. Swapping its checkpointer for
``ScopedCheckpointer`` (and serving it with ``LangGraphAgent``) is what makes the thread
``launch`` of one user a different thread from ``launch`` of every other user. The model call
is a placeholder (no network): it records its token usage on ``current_meter()``, so each run's
cost is charged to its caller. ``MEMORY_URL`` picks the backend (``memory://``,
``sqlite:///agenthood.db``, ``redis://...``, ``postgresql://...``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from agenthood_mw import current_meter
from agenthood_mw.api import AgenthoodAPI
from agenthood_mw.auth import AuthMiddleware
from agenthood_mw.integrations.langgraph import LangGraphAgent, ScopedCheckpointer
from agenthood_mw.memory import memory_from_url
from agenthood_mw.metering import PriceTable, ThinkingBudget

MODEL = "agenthood-offline-1"


def answer(state: MessagesState) -> dict[str, list[AIMessage]]:
    """Recall what this user said earlier in this conversation (a placeholder model call)."""
    said = [str(m.content) for m in state["messages"] if m.type == "human"]
    earlier = said[:-1]
    text = f"Noted: {said[-1]}." + (f" Earlier you said: {'; '.join(earlier)}." if earlier else "")
    current_meter().record(model=MODEL, input_tokens=10 * len(said), output_tokens=len(text))
    return {"messages": [AIMessage(text)]}


def build_graph() -> StateGraph[MessagesState]:
    graph = StateGraph(MessagesState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph


def make_app() -> AgenthoodAPI:
    secret = os.environ.get("AGENTHOOD_JWT_SECRET")
    if not secret:
        raise ValueError("AGENTHOOD_JWT_SECRET is not set (the HS256 secret of your tokens)")
    backend = memory_from_url(os.environ.get("MEMORY_URL", "memory://"))
    notes = LangGraphAgent(
        build_graph().compile(),
        name="notes",
        description="Remembers what you tell it, per conversation ('conversationId').",
        checkpointer=ScopedCheckpointer(backend),
        budget=ThinkingBudget(max_steps=10),
    )
    api = AgenthoodAPI(
        agents=[notes],
        # the same backend: a user's erase/export includes their LangGraph threads
        memory={"isolation": "per-user", "backend": backend},
        prices=PriceTable({MODEL: {"input": "0.75", "output": "2.00"}}),
        ledger=os.environ.get("LEDGER_URL", "memory://"),
    )
    api.add_middleware(
        AuthMiddleware,
        strategy="jwt",
        secret=secret,
        algorithms=["HS256"],
        audience="agenthood-api",
        exempt_paths=["/health", "/openapi.json"],
    )
    return api


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(make_app(), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
