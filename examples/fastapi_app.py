"""A FastAPI app with the whole product: auth, per-user rate limits, cost metering, memory.

Routes get the caller with ``Depends(require_identity("agents:run"))`` and their memory with
``Depends(user_memory)``; the bearer and API-key schemes appear in ``/openapi.json`` (and the
"Authorize" button of ``/docs``). Run::

    python examples/fastapi_app.py --port 8000 &
    TOKEN=$(python examples/fastapi_app.py --token --scope agents:run)
    curl -X PUT -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '"blue"' http://127.0.0.1:8000/memory/colour
    curl -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '{"task": "plan the release"}' http://127.0.0.1:8000/agents/dev/run
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/costs

Middleware order: ``add_middleware`` wraps the app, so the one added **last runs first**. They
are added innermost first, so a request meets them in this order:

1. ``AuthMiddleware`` (outermost): no valid JWT or API key, no further work; everything inside
   knows who is calling.
2. ``RateLimitMiddleware``: 20/min per *user* (keyed on that identity, not the IP address),
   burst 5; the 26th request of a burst is answered 429 before the app or the meter sees it.
3. ``CostMeterMiddleware`` (innermost): charges each request's model usage to the authenticated
   user; a refused request (401, 429) never opens a run, so it is never charged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from agenthood_mw import (
    AuthMiddleware,
    CostMeterMiddleware,
    Identity,
    MemoryScope,
    OfflineProvider,
    PriceTable,
    RateLimitMiddleware,
    ScopedMemory,
    current_identity,
    current_meter,
    memory_from_url,
    require_identity,
)
from agenthood_mw.auth import InMemoryKeyStore, mint_token
from agenthood_mw.metering import ledger_from_url

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"
PUBLIC = ["/health", "/docs", "/openapi.json"]
AGENTS = {"dev": "You are a careful developer. Answer with the steps you would take."}
#: API keys: use SQLiteKeyStore("keys.db") (or your own KeyStore) to keep them across restarts.
key_store = InMemoryKeyStore()
backend = memory_from_url(os.environ.get("MEMORY_URL", "memory://"))
ledger = ledger_from_url(os.environ.get("LEDGER_URL", "memory://"))
#: Stand-in model: deterministic, offline, labelled. Swap in OpenAICompatibleProvider(...).
model = OfflineProvider()
#: Dollars per million tokens. Load LiteLLM's file with PriceTable.from_json(path).
prices = PriceTable({model.model: {"input": "0.75", "output": "2.00"}})


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await backend.close()


app = FastAPI(title="agenthood-mw FastAPI example", lifespan=lifespan)
# innermost first: a request meets auth, then the rate limit, then the meter
app.add_middleware(
    CostMeterMiddleware, prices=prices, ledger=ledger, agents=list(AGENTS), exempt_paths=PUBLIC
)
app.add_middleware(RateLimitMiddleware, window="1m", max=20, burst=5, exempt_paths=PUBLIC)
app.add_middleware(
    AuthMiddleware,
    strategy=["jwt", "api_key"],
    secret=SECRET,
    audience=AUDIENCE,
    key_store=key_store,
    exempt_paths=PUBLIC,
)

# AuthMiddleware checks the credentials; these only document them in OpenAPI (no check here).
bearer = HTTPBearer(auto_error=False, description="A JWT (or an ah_ API key)")
api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An ah_ API key")
protected = APIRouter(dependencies=[Security(bearer), Security(api_key)])

Caller = Annotated[Identity, Depends(require_identity())]
Runner = Annotated[Identity, Depends(require_identity("agents:run"))]


def user_memory(user: Caller) -> ScopedMemory:
    """The caller's memory: bound to their scope, so no other user's data is reachable."""
    return ScopedMemory(backend, MemoryScope.for_identity(user))


Memory = Annotated[ScopedMemory, Depends(user_memory)]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@protected.get("/me")
def me(user: Caller) -> dict[str, object]:
    return {"userId": user.user_id, "method": user.method, "scopes": sorted(user.scopes)}


@protected.put("/memory/{key:path}")
async def remember(key: str, memory: Memory, value: Annotated[Any, Body()]) -> dict[str, Any]:
    try:
        record = await memory.facts.put(key, value)
    except ValueError as exc:  # InvalidKeyError / InvalidValueError
        raise HTTPException(422, detail=str(exc)) from None
    return {"key": record.key, "value": record.value}


@protected.get("/memory/{key:path}")
async def recall(key: str, memory: Memory) -> dict[str, Any]:
    try:
        record = await memory.facts.get(key)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if record is None:
        raise HTTPException(404, detail=f"no memory named {key!r}")
    return {"key": record.key, "value": record.value}


@protected.get("/memory")
async def memory_keys(memory: Memory) -> dict[str, list[str]]:
    return {"keys": [record.key for record in await memory.facts.list(limit=100)]}


@protected.post("/agents/{name}/run")
async def run_agent(
    name: str, user: Runner, memory: Memory, task: Annotated[str, Body(embed=True, min_length=1)]
) -> dict[str, Any]:
    if name not in AGENTS:
        raise HTTPException(404, detail=f"no agent named {name!r}")
    answer = await model.complete(  # the usage is charged to this request's meter
        [{"role": "system", "content": AGENTS[name]}, {"role": "user", "content": task}]
    )
    await memory.episodic.append({"agent": name, "task": task, "output": answer.text})
    return {
        "agent": name,
        "userId": user.user_id,
        "output": answer.text,
        "cost": current_meter().totals.as_cost_json(),
        "memoryScope": memory.scope.label,
    }


@protected.get("/costs")
async def costs(user: Caller) -> dict[str, str]:
    assert user is current_identity()
    spent = await ledger.spend(MemoryScope.for_identity(user))
    return {"userId": user.user_id, "totalCost": str(spent)}


app.include_router(protected)


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
