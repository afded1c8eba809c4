"""A Flask app with the whole product, on the native WSGI shells (no ASGI bridge).

Auth, per-user rate limits, cost metering and per-user memory (the blocking ``SyncMemory``
facade). Serve it (from the repository root) with a production WSGI server and call it::

    waitress-serve --listen=127.0.0.1:8000 examples.flask_app:app &
    # or: gunicorn --threads 8 -b 127.0.0.1:8000 examples.flask_app:app
    TOKEN=$(python examples/flask_app.py --token --scope agents:run)
    curl -X PUT -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '"blue"' http://127.0.0.1:8000/memory/colour
    curl -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '{"task": "plan the release"}' http://127.0.0.1:8000/agents/dev/run
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/costs

(``python examples/flask_app.py --port 8000`` runs Flask's development server instead.)

Middleware order: each shell wraps ``app.wsgi_app``, so the one applied **last runs first**.
They are applied innermost first, so a request meets them in this order:

1. ``AuthMiddleware`` (outermost): no valid credential, no further work; everything inside
   knows who is calling (``environ["agenthood.identity"]``, ``current_identity()``).
2. ``RateLimitMiddleware``: 20/min per *user* (keyed on that identity, not the IP address),
   burst 5; the 26th request of a burst is answered 429 before Flask or the meter sees it.
3. ``CostMeterMiddleware`` (innermost): charges each request's model usage to the authenticated
   user; a refused request (401, 429) never opens a run, so it is never charged.

With several worker *processes* (gunicorn ``-w 4``) use shared stores: ``storage="redis://..."``
for the rate limit, ``MEMORY_URL`` / ``LEDGER_URL`` on SQLite or PostgreSQL. ``SyncMemory`` runs
its backend on a thread started at import, so do not use gunicorn's ``--preload`` (a forked
worker would not have that thread).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from typing import Any

from flask import Flask, jsonify, request

import agenthood_mw.wsgi
from agenthood_mw import MemoryScope, PriceTable, current_identity, current_meter
from agenthood_mw.auth import mint_token
from agenthood_mw.memory import Record, SyncMemory, SyncScopedMemory
from agenthood_mw.metering import ledger_from_url

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"
PUBLIC = ["/health"]
AGENTS = {"dev": "You are a careful developer. Answer with the steps you would take."}
MODEL = "example-model-1"

#: Blocking facade over any backend: safe from every server thread.
memory_store = SyncMemory(os.environ.get("MEMORY_URL", "memory://"))
ledger = ledger_from_url(os.environ.get("LEDGER_URL", "memory://"))
#: Dollars per million tokens. Load LiteLLM's file with PriceTable.from_json(path).
prices = PriceTable({MODEL: {"input": "0.75", "output": "2.00"}})

app = Flask(__name__)
# innermost first: a request meets auth, then the rate limit, then the meter
app.wsgi_app = agenthood_mw.wsgi.CostMeterMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, prices=prices, ledger=ledger, agents=list(AGENTS), exempt_paths=PUBLIC
)
app.wsgi_app = agenthood_mw.wsgi.RateLimitMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, window="1m", max=20, burst=5, exempt_paths=PUBLIC
)
app.wsgi_app = agenthood_mw.wsgi.AuthMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, strategy="jwt", secret=SECRET, audience=AUDIENCE, exempt_paths=PUBLIC
)


def user_memory() -> SyncScopedMemory:
    """The caller's memory: bound to their scope, so no other user's data is reachable."""
    return memory_store.scoped(MemoryScope.for_identity(current_identity()))


def call_model(system: str, task: str) -> tuple[str, int, int]:
    """Stand-in for your LLM client: the answer and its input/output token counts."""
    answer = f"[offline] {system.split('.')[0]}: the first step for {task!r} is to read the code"
    return answer, (len(system) + len(task)) // 4 + 1, len(answer) // 4 + 1


def error(status: int, kind: str, message: str) -> Any:
    return jsonify(error={"type": kind, "message": message}), status


@app.get("/health")
def health() -> Any:
    return jsonify(status="ok")


@app.get("/me")
def me() -> Any:
    user = request.environ["agenthood.identity"]  # same object as current_identity()
    return jsonify(userId=user.user_id, tenant=user.tenant, scopes=sorted(user.scopes))


@app.route("/memory/<path:key>", methods=["GET", "PUT"])
def memory_item(key: str) -> Any:
    facts = user_memory().facts
    record: Record | None
    try:
        if request.method == "PUT":
            value = request.get_json(force=True, silent=True)
            if value is None:
                return error(422, "invalid_request", "send the value as a JSON body")
            record = facts.put(key, value)
        else:
            record = facts.get(key)
    except ValueError as exc:  # the memory's InvalidKeyError / InvalidValueError
        return error(422, "invalid_request", str(exc))
    if record is None:
        return error(404, "not_found", f"no memory named {key!r}")
    return jsonify(key=record.key, value=record.value)


@app.get("/memory")
def memory_keys() -> Any:
    return jsonify(keys=[record.key for record in user_memory().facts.list(limit=100)])


@app.post("/agents/<name>/run")
def run_agent(name: str) -> Any:
    user = current_identity()
    if not user.has_scopes("agents:run"):
        return error(403, "insufficient_scope", "agents:run required")
    if name not in AGENTS:
        return error(404, "agent_not_found", f"no agent named {name!r}")
    body = request.get_json(force=True, silent=True)
    task = body.get("task") if isinstance(body, dict) else None
    if not isinstance(task, str) or not task.strip():
        return error(422, "invalid_request", 'send {"task": "..."} with a non-empty task')
    memory = user_memory()
    output, input_tokens, output_tokens = call_model(AGENTS[name], task)
    meter = current_meter()
    meter.record(model=MODEL, input_tokens=input_tokens, output_tokens=output_tokens)
    memory.episodic.append({"agent": name, "task": task, "output": output})
    return jsonify(
        agent=name,
        userId=user.user_id,
        output=output,
        cost=meter.totals.as_cost_json(),
        memoryScope=memory.scope.label,
    )


@app.get("/costs")
def costs() -> Any:
    user = current_identity()
    spent = asyncio.run(ledger.spend(MemoryScope.for_identity(user)))
    return jsonify(userId=user.user_id, totalCost=str(spent))


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
