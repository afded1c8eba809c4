"""A Starlette app with the whole product: auth, per-user rate limits, cost metering, memory.

Run it (needs uvicorn: ``pip install 'agenthood-mw[serve]'``) and call it::

    python examples/starlette_app.py --port 8000 &
    TOKEN=$(python examples/starlette_app.py --token --user usr_8f3a --scope agents:run)
    curl -X PUT -H "Authorization: Bearer $TOKEN" -d '"blue"' http://127.0.0.1:8000/memory/colour
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/memory/colour
    curl -X POST -H "Authorization: Bearer $TOKEN" -d '{"task": "plan the release"}' \\
      http://127.0.0.1:8000/agents/dev/run
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/costs

Middleware order (the ``middleware=[...]`` list runs first to last, outermost first):

1. ``AuthMiddleware`` is outermost: a request without a valid credential is refused before it
   costs anything, and everything inside knows *who* is calling.
2. ``RateLimitMiddleware`` keys its counters on that identity (per user, not per IP address), and
   refuses the 26th request of a burst (20/min, burst 5) before the app or the meter sees it.
3. ``CostMeterMiddleware`` is innermost: it attributes each request's model usage to the
   authenticated user, and a refused request (401, 429) never opens a run, so it is never charged.

Memory is per user by construction: ``user_memory()`` binds the backend to
``MemoryScope.for_identity(current_identity())``; no route handles a user id.

Set ``AGENTHOOD_JWT_SECRET`` in production; the default secret is for local development only.
``MEMORY_URL`` / ``LEDGER_URL`` choose the stores (default ``memory://``; e.g.
``sqlite:///agenthood.db``, ``sqlite:///costs.db``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthood_mw import (
    AuthMiddleware,
    CostMeterMiddleware,
    MemoryScope,
    OfflineProvider,
    PriceTable,
    RateLimitMiddleware,
    ScopedMemory,
    current_identity,
    current_meter,
    memory_from_url,
)
from agenthood_mw.auth import mint_token
from agenthood_mw.memory import Record
from agenthood_mw.metering import ledger_from_url

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"
PUBLIC = ["/health"]
AGENTS = {"dev": "You are a careful developer. Answer with the steps you would take."}

backend = memory_from_url(os.environ.get("MEMORY_URL", "memory://"))
ledger = ledger_from_url(os.environ.get("LEDGER_URL", "memory://"))
#: Stand-in model: deterministic, offline, labelled. Swap in OpenAICompatibleProvider(...).
model = OfflineProvider()
#: Dollars per million tokens. Load LiteLLM's file with PriceTable.from_json(path).
prices = PriceTable({model.model: {"input": "0.75", "output": "2.00"}})


def user_memory() -> ScopedMemory:
    """The caller's memory: bound to their scope, so no other user's data is reachable."""
    return ScopedMemory(backend, MemoryScope.for_identity(current_identity()))


def error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def me(request: Request) -> JSONResponse:
    user = request.user  # the Identity, also returned by current_identity()
    assert user is current_identity()
    return JSONResponse(
        {"userId": user.user_id, "tenant": user.tenant, "scopes": sorted(user.scopes)}
    )


async def memory_item(request: Request) -> JSONResponse:
    facts, key = user_memory().facts, request.path_params["key"]
    try:
        record: Record | None
        if request.method == "PUT":
            record = await facts.put(key, json.loads(await request.body()))
        else:
            record = await facts.get(key)
    except ValueError as exc:  # not JSON, or the memory's InvalidKeyError / InvalidValueError
        return error(422, "invalid_request", str(exc))
    if record is None:
        return error(404, "not_found", f"no memory named {key!r}")
    return JSONResponse({"key": record.key, "value": record.value})


async def memory_keys(request: Request) -> JSONResponse:
    page = await user_memory().facts.list(limit=100)
    return JSONResponse({"keys": [record.key for record in page]})


@requires("agents:run")
async def run_agent(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    if name not in AGENTS:
        return error(404, "agent_not_found", f"no agent named {name!r}")
    try:
        task = json.loads(await request.body() or b"null")["task"]
    except (ValueError, TypeError, KeyError):
        task = None
    if not isinstance(task, str) or not task.strip():
        return error(422, "invalid_request", 'send {"task": "..."} with a non-empty task')
    memory = user_memory()
    answer = await model.complete(  # the usage is charged to this request's meter
        [{"role": "system", "content": AGENTS[name]}, {"role": "user", "content": task}]
    )
    await memory.episodic.append({"agent": name, "task": task, "output": answer.text})
    return JSONResponse(
        {
            "agent": name,
            "userId": request.user.user_id,
            "output": answer.text,
            "cost": current_meter().totals.as_cost_json(),
            "memoryScope": memory.scope.label,
        }
    )


async def costs(request: Request) -> JSONResponse:
    spent = await ledger.spend(MemoryScope.for_identity(current_identity()))
    return JSONResponse({"userId": request.user.user_id, "totalCost": str(spent)})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await backend.close()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/me", me),
        Route("/memory", memory_keys),
        Route("/memory/{key:path}", memory_item, methods=["GET", "PUT"]),
        Route("/agents/{name}/run", run_agent, methods=["POST"]),
        Route("/costs", costs),
    ],
    middleware=[  # outermost first: see the module docstring for why this order
        Middleware(
            AuthMiddleware, strategy="jwt", secret=SECRET, audience=AUDIENCE, exempt_paths=PUBLIC
        ),
        Middleware(RateLimitMiddleware, window="1m", max=20, burst=5, exempt_paths=PUBLIC),
        Middleware(
            CostMeterMiddleware,
            prices=prices,
            ledger=ledger,
            agents=list(AGENTS),
            exempt_paths=PUBLIC,
        ),
    ],
    lifespan=lifespan,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", action="store_true", help="print a development token")
    parser.add_argument("--user", default="usr_8f3a")
    parser.add_argument("--scope", action="append", default=[])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.token:
        print(mint_token(secret=SECRET, user_id=args.user, audience=AUDIENCE, scopes=args.scope))
        return 0
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
