"""A Starlette app behind ``AuthMiddleware`` (JWT, HS256).

Run it (needs uvicorn: ``pip install 'agenthood-mw[serve]'``) and call it::

    python examples/starlette_app.py --port 8000 &
    TOKEN=$(python examples/starlette_app.py --token --user usr_8f3a --scope agents:run)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/me

Set ``AGENTHOOD_JWT_SECRET`` in production; the default secret is for local development only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthood_mw import current_identity
from agenthood_mw.auth import AuthMiddleware, mint_token

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def me(request: Request) -> JSONResponse:
    user = request.user  # the Identity, also returned by current_identity()
    assert user is current_identity()
    return JSONResponse(
        {"userId": user.user_id, "tenant": user.tenant, "scopes": sorted(user.scopes)}
    )


@requires("agents:run")
async def run_agent(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    return JSONResponse({"agent": name, "userId": request.user.user_id, "output": "done"})


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/me", me),
        Route("/agents/{name}/run", run_agent, methods=["POST"]),
    ],
    middleware=[
        Middleware(
            AuthMiddleware,
            strategy="jwt",
            secret=SECRET,
            audience=AUDIENCE,
            exempt_paths=["/health"],
        )
    ],
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
