"""An ordinary FastAPI app that calls the OpenAI SDK, metered per user by one line.

The route below is what such an app already has: an ``AsyncOpenAI()`` client and a call to
``chat.completions.create``. The metering is the two middlewares (who is calling, what it
costs) and ONE line for the capture, ``instrument()``: the SDK's default HTTP client then
reports every call's usage to the request's meter, and checks the caller's budget before the
call is sent. Run::

    export OPENAI_API_KEY=sk-...          # (or OPENAI_BASE_URL=http://127.0.0.1:9000/v1 ...)
    python examples/fastapi_openai.py --port 8000 &
    TOKEN=$(python examples/fastapi_openai.py --token --user alice)
    curl -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
      -d '{"question": "What is a token bucket?"}' http://127.0.0.1:8000/ask
    agenthood costs --ledger sqlite:///costs.db

See docs/capture.md.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from openai import AsyncOpenAI

from agenthood_mw import AuthMiddleware, Budget, CostMeterMiddleware, PriceTable
from agenthood_mw.auth import mint_token
from agenthood_mw.capture import instrument

instrument()  # the one line: OpenAI's (and Anthropic's) default clients are metered

SECRET = os.environ.get("AGENTHOOD_JWT_SECRET", "dev-only-secret-change-me-0123456789abcdef")
AUDIENCE = "agenthood-api"
MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")

client = AsyncOpenAI()  # unchanged: built after instrument(), so its HTTP client is metered
app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/ask")
async def ask(body: dict[str, Any]) -> dict[str, Any]:
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": str(body.get("question", ""))}],
        max_tokens=int(body.get("max_tokens", 200)),
    )
    return {"answer": reply.choices[0].message.content}


app.add_middleware(
    CostMeterMiddleware,
    prices=PriceTable.default(),
    ledger=os.environ.get("LEDGER_URL", "sqlite:///costs.db"),
    budgets=[Budget(per="user", limit="5.00", window="1d")],
    exempt_paths=["/health"],
)
app.add_middleware(
    AuthMiddleware, strategy="jwt", secret=SECRET, audience=AUDIENCE, exempt_paths=["/health"]
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", action="store_true", help="print a development token")
    parser.add_argument("--user", default="usr_8f3a")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.token:
        print(mint_token(secret=SECRET, user_id=args.user, audience=AUDIENCE))
        return 0
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
