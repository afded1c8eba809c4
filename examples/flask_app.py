"""A Flask app behind the native WSGI ``AuthMiddleware`` (no ASGI bridge).

Run (Flask's development server)::

    python examples/flask_app.py --port 8000 &
    TOKEN=$(python examples/flask_app.py --token --scope agents:run)
    curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/agents/dev/run

In production serve ``examples.flask_app:app`` with gunicorn or waitress.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from flask import Flask, jsonify, request

import agenthood_mw.wsgi
from agenthood_mw import current_identity
from agenthood_mw.auth import mint_token

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"

app = Flask(__name__)
app.wsgi_app = agenthood_mw.wsgi.AuthMiddleware(  # type: ignore[method-assign]
    app.wsgi_app,
    strategy="jwt",
    secret=SECRET,
    audience=AUDIENCE,
    exempt_paths=["/health"],
)


@app.get("/health")
def health() -> Any:
    return jsonify(status="ok")


@app.get("/me")
def me() -> Any:
    user = request.environ["agenthood.identity"]  # same object as current_identity()
    return jsonify(userId=user.user_id, tenant=user.tenant, scopes=sorted(user.scopes))


@app.post("/agents/<name>/run")
def run_agent(name: str) -> Any:
    user = current_identity()
    if not user.has_scopes("agents:run"):
        return jsonify(error={"type": "insufficient_scope", "message": "agents:run required"}), 403
    return jsonify(agent=name, userId=user.user_id, output="done")


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
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
