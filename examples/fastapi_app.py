"""A FastAPI app behind ``AuthMiddleware``, with API keys and JWTs chained.

Routes declare what they need with ``Depends(require_identity("agents:run"))``. Run::

    python examples/fastapi_app.py --port 8000 &
    TOKEN=$(python examples/fastapi_app.py --token --scope agents:run)
    curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/agents/dev/run
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from fastapi import Depends, FastAPI

from agenthood_mw import Identity
from agenthood_mw.auth import AuthMiddleware, InMemoryKeyStore, mint_token, require_identity

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"
#: API keys: use SQLiteKeyStore("keys.db") (or your own KeyStore) to keep them across restarts.
key_store = InMemoryKeyStore()

app = FastAPI(title="agenthood-mw FastAPI example")
app.add_middleware(
    AuthMiddleware,
    strategy=["jwt", "api_key"],
    secret=SECRET,
    audience=AUDIENCE,
    key_store=key_store,
    exempt_paths=["/health", "/docs", "/openapi.json"],
)

RunIdentity = Depends(require_identity("agents:run"))
AnyIdentity = Depends(require_identity())


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/me")
def me(user: Identity = AnyIdentity) -> dict[str, object]:
    return {"userId": user.user_id, "method": user.method, "scopes": sorted(user.scopes)}


@app.post("/agents/{name}/run")
async def run_agent(name: str, user: Identity = RunIdentity) -> dict[str, object]:
    return {"agent": name, "userId": user.user_id, "output": "done"}


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
