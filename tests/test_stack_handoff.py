"""The stack answers the same whether its layers are adjacent or not.

Each middleware knows only its ``app`` (issue 11 removed the handoff by which an adjacent
``AuthMiddleware`` / ``RateLimitMiddleware`` reached into its neighbours). Every scenario runs
twice from fresh middlewares: once with the layers adjacent and once with a pass-through ASGI
layer between them. Statuses, bodies and every header -- names, order and values -- must be
the same; only the run id differs, being unique per run.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgi_driver import drive
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw import (
    Budget,
    CostMeterMiddleware,
    Identity,
    MemoryScope,
    PriceTable,
    RateLimitMiddleware,
    ThinkingBudget,
)
from agenthood_mw._core.scope import ANONYMOUS_TENANT
from agenthood_mw.metering import current_meter

PRICES = PriceTable({"m": {"input": "1", "output": "2"}})
CLOCK = 1_000.0


#: One prebuilt start message sent by every response: the layers must never mutate it.
START: dict[str, Any] = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}


def seen_by_app(scope: Scope) -> bytes:
    """What the app can observe of the layers: the identity and meter bound to the request
    (ContextVars) and what they shared in ``scope["state"]["agenthood"]``."""
    from agenthood_mw import current_identity

    shared = scope.get("state", {}).get("agenthood", {})
    try:
        who = current_identity().identity or "anonymous"
    except LookupError:
        who = "-"
    try:
        same_meter = current_meter() is shared.get("meter")
    except LookupError:
        same_meter = None
    decision = shared.get("rate_limit")
    left = -1 if decision is None else decision.remaining
    return f"{who}|{same_meter}|{sorted(shared)}|{left}".encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Routes by path: each one exercises a different exit of the metering layer."""
    path = scope["path"][len(scope.get("root_path", "")) :]
    exempt = "exempt" in path  # the metering-exempt scenario: no meter
    meter = None if exempt else current_meter()
    if path == "/boom":
        raise RuntimeError("boom")
    if meter is not None and path == "/stop":
        meter.thinking_budget = ThinkingBudget(max_steps=0)
        meter.check_budget()  # raises BudgetExhausted before the response starts
    if meter is not None:
        meter.record(model="m", input_tokens=1000, output_tokens=500)
    await send(START)
    if path == "/stream":
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        if meter is not None:
            meter.record(model="m", input_tokens=10, output_tokens=0)
        await send({"type": "http.response.body", "body": b"b", "more_body": False})
        return
    await send({"type": "http.response.body", "body": seen_by_app(scope)})


class PassThrough:
    """Any ASGI layer between the two: the rate limiter then wraps ``send`` as usual."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class AsUser:
    """Sets ``scope["user"]`` from the ``x-user`` / ``x-tenant`` headers (auth's job)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        tenant = headers.get(b"x-tenant")
        scope["user"] = Identity(
            user_id=headers[b"x-user"].decode(), tenant=tenant.decode() if tenant else None
        )
        await self.app(scope, receive, send)


def build(
    adjacent: bool, meter_options: dict[str, Any], limit_options: dict[str, Any]
) -> tuple[Any, RateLimitMiddleware, CostMeterMiddleware]:
    meter = CostMeterMiddleware(app, prices=PRICES, clock=lambda: CLOCK, **meter_options)
    inner: ASGIApp = meter if adjacent else PassThrough(meter)
    options = {"window": "1m", "max": 3, "clock": lambda: CLOCK, **limit_options}
    limiter = RateLimitMiddleware(inner, **options)
    return AsUser(limiter), limiter, meter


async def request(
    stack: Any, path: str, user: str = "alice", tenant: str | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"x-user", user.encode())]
    if tenant is not None:
        headers.append((b"x-tenant", tenant.encode()))
    try:
        sent = await drive(stack, path=path, method="POST", headers=headers)
    except RuntimeError:
        return -1, [], b""  # the app's own exception propagates (the server answers 500)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], list(start["headers"]), body


def normalised(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, b"<run id>" if k == b"x-agenthood-run-id" else v) for k, v in headers]


Step = tuple[str, dict[str, Any]]
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any], list[Step]]] = {
    "plain responses": ({}, {}, [("/ok", {}), ("/ok", {"user": "bob"}), ("/ok", {})]),
    "streamed body": ({}, {}, [("/stream", {})]),
    "thinking budget stops the run before it responds": ({}, {}, [("/stop", {})]),
    "app raises": ({}, {}, [("/boom", {}), ("/ok", {})]),
    "metering-exempt path": (
        {"exempt_paths": ["/exempt"]},
        {},
        [("/exempt", {}), ("/stream", {}), ("/exempt", {})],
    ),
    "spend budget refuses before the app runs": (
        {"budgets": [Budget(per="user", limit="0.001", window="1d")]},
        {},
        [("/ok", {}), ("/ok", {}), ("/ok", {"user": "bob"})],
    ),
    "token rate refuses": ({"tokens_per_minute": 100}, {}, [("/ok", {}), ("/ok", {})]),
    "reserved tenant": ({}, {}, [("/ok", {"tenant": ANONYMOUS_TENANT})]),
    "rate limit refuses (the meter never runs)": (
        {},
        {},
        [("/ok", {}), ("/ok", {}), ("/ok", {}), ("/ok", {}), ("/ok", {})],
    ),
    "legacy headers (general path)": ({}, {"legacy_headers": True}, [("/ok", {}), ("/stop", {})]),
    "weighted requests (general path)": (
        {},
        {"cost": lambda scope: 2},
        [("/ok", {}), ("/stream", {}), ("/ok", {})],
    ),
    "no cost header": ({"cost_header": False}, {}, [("/ok", {})]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_adjacent_layers_answer_exactly_like_separate_ones(name: str) -> None:
    meter_options, limit_options, steps = SCENARIOS[name]
    answers: dict[bool, list[Any]] = {}
    ledgers: dict[bool, list[tuple[Any, ...]]] = {}
    for adjacent in (True, False):
        stack, _limiter, meter = build(adjacent, meter_options, limit_options)
        answers[adjacent] = []
        for path, who in steps:
            status, headers, body = await request(stack, path, **who)
            answers[adjacent].append((status, normalised(headers), body))
        await meter.flush()
        ledgers[adjacent] = await _runs(meter)
        await meter.close()
    assert answers[True] == answers[False]
    assert ledgers[True] == ledgers[False]
    # Not vacuous: the limiter's headers reached the client in this scenario.
    assert any(b"ratelimit-policy" in dict(h) for _s, h, _b in answers[True] if h)


async def _runs(meter: CostMeterMiddleware) -> list[tuple[Any, ...]]:
    """What the trace store holds for the two users, without the (unique) run ids."""
    traces = meter.traces
    assert traces is not None
    runs = []
    for user in ("alice", "bob"):
        scope = MemoryScope.for_identity(Identity(user_id=user))
        for trace in await traces.list(scope, limit=100):
            totals = trace["totals"]
            runs.append(
                (
                    user,
                    trace["path"],
                    trace["status"],
                    trace["stopReason"],
                    trace["error"],
                    totals["inputTokens"],
                    totals["outputTokens"],
                    totals["totalCost"],
                )
            )
    return sorted(runs, key=repr)


async def test_replacing_the_inner_app_later_is_honoured() -> None:
    """The handoff is checked per request: a layer inserted after construction runs."""
    stack, limiter, meter = build(True, {}, {})
    calls: list[str] = []

    class Spy(PassThrough):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            calls.append(scope["path"])
            await self.app(scope, receive, send)

    limiter.app = Spy(meter)
    status, headers, _ = await request(stack, "/ok")
    assert status == 200 and calls == ["/ok"]
    names = [k for k, _ in headers]
    assert names.index(b"x-agenthood-run-id") < names.index(b"ratelimit-policy")
    await meter.close()


# -- the three layers of the design: AuthMiddleware -> RateLimitMiddleware -> CostMeterMiddleware
SECRET = "handoff-secret-" + "x" * 40


def build3(
    adjacent: bool,
    meter_options: dict[str, Any],
    limit_options: dict[str, Any],
    auth_options: dict[str, Any],
) -> tuple[Any, CostMeterMiddleware]:
    from agenthood_mw import AuthMiddleware

    meter = CostMeterMiddleware(app, prices=PRICES, clock=lambda: CLOCK, **meter_options)
    options = {"window": "1m", "max": 3, "clock": lambda: CLOCK, **limit_options}
    limiter = RateLimitMiddleware(meter if adjacent else PassThrough(meter), **options)
    auth = AuthMiddleware(
        limiter if adjacent else PassThrough(limiter),
        strategy="jwt",
        secret=SECRET,
        audience="agenthood-api",
        **auth_options,
    )
    return auth, meter


def token(user: str) -> bytes:
    from agenthood_mw.auth import mint_token

    return mint_token(secret=SECRET, user_id=user).encode()


async def request3(
    stack: Any, path: str, credential: bytes | None, kind: str = "http", root_path: str = ""
) -> tuple[Any, ...]:
    headers = [] if credential is None else [(b"authorization", b"Bearer " + credential)]
    try:
        sent = await drive(
            stack, path=path, method="POST", headers=headers, kind=kind, root_path=root_path
        )
    except RuntimeError:
        return (-1,)
    if kind == "websocket":
        return tuple(m["type"] for m in sent)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], normalised(list(start["headers"])), body


async def ws_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


Step3 = tuple[str, str | None, str]
SCENARIOS3: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[Step3]]] = {
    "plain, two users": (
        {},
        {},
        {},
        [("/ok", "alice", "http"), ("/ok", "bob", "http"), ("/stream", "alice", "http")],
    ),
    "no credential, bad credential": (
        {},
        {},
        {},
        [("/ok", None, "http"), ("/ok", "garbage", "http"), ("/ok", "alice", "http")],
    ),
    "thinking budget, app error": (
        {},
        {},
        {},
        [("/stop", "alice", "http"), ("/boom", "alice", "http"), ("/ok", "alice", "http")],
    ),
    "rate limit refuses": ({}, {}, {}, [("/ok", "alice", "http")] * 5),
    "spend budget refuses": (
        {"budgets": [Budget(per="user", limit="0.001", window="1d")]},
        {},
        {},
        [("/ok", "alice", "http"), ("/ok", "alice", "http")],
    ),
    "rate-limit-exempt path": (
        {},
        {"exempt_paths": ["/exempt-rl"]},
        {},
        [("/exempt-rl", "alice", "http")] * 4,
    ),
    "metering-exempt path": (
        {"exempt_paths": ["/exempt"]},
        {},
        {},
        [("/exempt", "alice", "http"), ("/ok", "alice", "http")],
    ),
    "auth-exempt path (anonymous, limited by address)": (
        {},
        {},
        {"exempt_paths": ["/exempt-auth"]},
        [("/exempt-auth", None, "http")] * 4,
    ),
    "optional auth: anonymous callers limited by address": (
        {},
        {},
        {"optional": True},
        [("/ok", None, "http"), ("/ok", "alice", "http"), ("/ok", None, "http")],
    ),
    "mounted under a root_path, exempt paths relative to it": (
        {"exempt_paths": ["/exempt"]},
        {"exempt_paths": ["/exempt-rl"]},
        {},
        [("/ok", "alice", "/v1"), ("/exempt", "alice", "/v1"), ("/exempt-rl", "alice", "/v1")],
    ),
    "legacy headers (no handoff from auth)": (
        {},
        {"legacy_headers": True},
        {},
        [("/ok", "alice", "http")] * 4,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS3))
async def test_three_adjacent_layers_answer_exactly_like_separate_ones(name: str) -> None:
    meter_options, limit_options, auth_options, steps = SCENARIOS3[name]
    answers: dict[bool, list[Any]] = {}
    traces: dict[bool, list[tuple[Any, ...]]] = {}
    for adjacent in (True, False):
        stack, meter = build3(adjacent, meter_options, limit_options, auth_options)
        answers[adjacent] = []
        for path, user, where in steps:
            credential = None if user is None else b"x.y.z" if user == "garbage" else token(user)
            # ``where``: "http", "websocket", or a root_path the app is mounted under.
            kind = where if where in ("http", "websocket") else "http"
            root = "" if where in ("http", "websocket") else where
            answers[adjacent].append(await request3(stack, path, credential, kind, root))
        await meter.flush()
        traces[adjacent] = await _runs(meter)
        await meter.close()
    assert answers[True] == answers[False]
    assert traces[True] == traces[False]
    # Not vacuous: the limiter's headers reached the client (except on its exempt path).
    limited = any(b"ratelimit-policy" in dict(a[1]) for a in answers[True] if len(a) == 3)
    assert limited is (name != "rate-limit-exempt path")
    assert START["headers"] == [(b"content-type", b"text/plain")]  # never mutated


async def test_websockets_go_through_every_layer_unchanged() -> None:
    from agenthood_mw import AuthMiddleware

    results = []
    for adjacent in (True, False):
        meter = CostMeterMiddleware(ws_app, prices=PRICES)
        limiter = RateLimitMiddleware(meter if adjacent else PassThrough(meter), window="1m", max=3)
        auth = AuthMiddleware(
            limiter if adjacent else PassThrough(limiter),
            strategy="jwt",
            secret=SECRET,
            audience="agenthood-api",
        )
        results.append([await request3(auth, "/ws", token("alice"), "websocket") for _ in range(4)])
        await meter.close()
    assert results[0] == results[1]
    assert results[0][0] == ("websocket.accept", "websocket.close")
    assert results[0][3] == ("websocket.close",)  # the fourth connection is refused
