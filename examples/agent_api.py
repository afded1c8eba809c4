"""Your own agent as an HTTP endpoint: AgenthoodAPI + auth + rate limits + provider failover.

Run it (the secret is the one your identity provider signs tokens with; 32+ bytes):

    export AGENTHOOD_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
    agenthood serve examples.agent_api:app --port 3000
    JWT=$(agenthood token --user usr_8f3a)
    curl -X POST http://127.0.0.1:3000/agents/todo/run -H "Authorization: Bearer $JWT" \\
      -H "Content-Type: application/json" -d '{"task": "add ship the release notes"}'

With ``LLM_PRIMARY_URL`` / ``LLM_PRIMARY_MODEL`` (and optionally ``LLM_SECONDARY_URL`` /
``LLM_SECONDARY_MODEL``, keys in ``LLM_PRIMARY_API_KEY`` / ``LLM_SECONDARY_API_KEY``) the
agent talks to OpenAI-compatible servers (OpenAI, vLLM, Ollama, a LiteLLM proxy) through a
``ProviderFailover``; without them it uses the offline provider (labelled placeholder text).
"""

from __future__ import annotations

import os

from agenthood_mw.api import (
    AgenthoodAPI,
    LLMProvider,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderFailover,
    RunContext,
)
from agenthood_mw.auth import AuthMiddleware
from agenthood_mw.metering import PriceTable, ThinkingBudget
from agenthood_mw.ratelimit import RateLimitMiddleware


class TodoAgent:
    """Keeps each user's to-do list in their own memory and asks the model what to do first."""

    name = "todo"
    description = "Your to-do list: 'add <item>', 'done <item>', 'list', 'what next?'"
    budget = ThinkingBudget(max_steps=5, max_tokens=4_000)  # this agent's own limits

    async def run(self, task: str, ctx: RunContext) -> str:
        items = ctx.memory.facts  # scoped to the caller: no user id anywhere in this code
        verb, _, rest = task.strip().partition(" ")
        if verb.lower() == "add" and rest:
            ctx.step("add", item=rest)
            await items.put(f"todo/{rest.lower()}", {"item": rest})
            return f"Added: {rest}"
        if verb.lower() == "done" and rest:
            ctx.step("done", item=rest)
            removed = await items.delete(f"todo/{rest.lower()}")
            return f"Done: {rest}" if removed else f"Not on your list: {rest}"
        ctx.step("list")
        page = await items.list(prefix="todo/", limit=50)
        todo = [record.value["item"] for record in page]
        if not todo:
            return "Your list is empty."
        listing = "\n".join(f"- {item}" for item in todo)
        if verb.lower() == "list":
            return listing
        ctx.step("prioritise", items=len(todo))
        answer = await ctx.complete(
            [
                {"role": "system", "content": "Pick the one item to do first and say why."},
                {"role": "user", "content": listing},
            ],
            max_tokens=200,
        )
        return f"{listing}\n\n{answer.text}"


def make_provider() -> LLMProvider:
    """The failover chain from the environment, or the offline provider."""
    chain: list[LLMProvider] = []
    for role in ("PRIMARY", "SECONDARY"):
        url, model = os.environ.get(f"LLM_{role}_URL"), os.environ.get(f"LLM_{role}_MODEL")
        if url and model:
            chain.append(
                OpenAICompatibleProvider(
                    model=model,
                    base_url=url,
                    api_key=os.environ.get(f"LLM_{role}_API_KEY") or None,
                    name=role.lower(),
                    timeout=30,
                )
            )
    if not chain:
        return OfflineProvider()
    return ProviderFailover(chain, failure_threshold=3, cooldown=30)


def make_app() -> AgenthoodAPI:
    secret = os.environ.get("AGENTHOOD_JWT_SECRET")
    if not secret:
        raise ValueError("AGENTHOOD_JWT_SECRET is not set (the HS256 secret of your tokens)")
    api = AgenthoodAPI(
        agents=[TodoAgent()],
        memory={"isolation": "per-user", "backend": os.environ.get("MEMORY_URL", "memory://")},
        provider=make_provider(),
        # dollars per million tokens; models without a price are metered at zero, with a warning
        prices=PriceTable(
            {
                "gpt-4o-mini": {"input": "0.15", "output": "0.60", "cached_input": "0.075"},
                "agenthood-offline-1": {"input": "0.75", "output": "2.00"},
            },
            unknown="zero",
        ),
        ledger=os.environ.get("LEDGER_URL", "memory://"),
    )
    # Starlette order: the middleware added last runs first -> auth, then the rate limit.
    api.add_middleware(RateLimitMiddleware, window="1m", max=20, burst=5, exempt_paths=["/health"])
    api.add_middleware(
        AuthMiddleware,
        strategy="jwt",
        secret=secret,
        algorithms=["HS256"],
        audience="agenthood-api",
        exempt_paths=["/health", "/openapi.json"],
    )
    return api


app = make_app()
