"""An app may send the same prebuilt ``http.response.start`` dict on every request.

Regression: the rate-limit and metering shells used to set ``message["headers"]`` on the app's
own dict, so each response carried the headers of every earlier request (another user's run id
and cost). The shells must send a new message and leave the app's dict untouched.
"""

from __future__ import annotations

from typing import Any

from asgi_driver import drive
from starlette.types import Receive, Scope, Send

from agenthood_mw import CostMeterMiddleware, Identity, PriceTable, RateLimitMiddleware
from agenthood_mw.metering import current_meter

START: dict[str, Any] = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}
BODY: dict[str, Any] = {"type": "http.response.body", "body": b"ok"}


async def prebuilt_app(scope: Scope, receive: Receive, send: Send) -> None:
    current_meter().record(model="m", input_tokens=1000, output_tokens=0)
    await send(START)
    await send(BODY)


def with_user(app: Any) -> Any:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        user = dict(scope["headers"]).get(b"x-user", b"").decode()
        scope["user"] = Identity(user_id=user)
        await app(scope, receive, send)

    return wrapped


async def call(app: Any, user: str) -> list[tuple[bytes, bytes]]:
    sent = await drive(app, headers=[(b"x-user", user.encode())])
    return list(sent[0]["headers"])


async def test_prebuilt_start_message_is_never_mutated() -> None:
    meter = CostMeterMiddleware(
        prebuilt_app, prices=PriceTable({"m": {"input": "1", "output": "1"}})
    )
    app = with_user(RateLimitMiddleware(meter, window="1m", max=100))
    seen_run_ids = []
    for user in ("alice", "bob", "carol"):
        headers = await call(app, user)
        run_ids = [v for k, v in headers if k == b"x-agenthood-run-id"]
        policies = [v for k, v in headers if k == b"ratelimit-policy"]
        assert len(run_ids) == 1, headers
        assert len(policies) == 1, headers
        seen_run_ids.append(run_ids[0])
        # Each response carries its own cost: 1000 input tokens at $1/M.
        assert [v for k, v in headers if k == b"x-agenthood-cost"] == [b"0.001"]
    assert len(set(seen_run_ids)) == 3
    assert START["headers"] == [(b"content-type", b"text/plain")]
    await meter.close()
