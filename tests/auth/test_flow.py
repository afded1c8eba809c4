"""The one authenticate flow of the core, driven by both shells (issue 11).

The flow yields every step that may block; the WSGI shell runs it inline, the ASGI shell
awaits its async form or runs a blocking one in a worker thread. The middleware knows only its
``app``: it calls it and nothing else.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from auth_support import AUDIENCE, SECRET
from hypothesis import given, settings
from hypothesis import strategies as st
from test_failed_auth import BAD, _asgi, _good, _ok_app, _ok_wsgi, _wsgi

from agenthood_mw import Identity
from agenthood_mw._core.authcore import Credential, InvalidCredential
from agenthood_mw._core.authflow import (
    AuthRequest,
    Call,
    Flow,
    FlowAuthenticator,
    authenticate,
    run_flow,
)
from agenthood_mw.auth import AuthMiddleware
from agenthood_mw.wsgi import AuthMiddleware as WSGIAuth


class _Recording(FlowAuthenticator):
    """An authenticator written as a flow: one blocking step, then a check."""

    name = "recording"

    def __init__(self) -> None:
        self.threads: list[int] = []

    def recognizes(self, credential: Credential) -> bool:
        return True

    def _lookup(self, token: str) -> str | None:
        self.threads.append(threading.get_ident())
        return {"good": "erin"}.get(token)

    def auth_flow(self, credential: Credential) -> Flow[Identity]:
        owner = yield Call(lambda: self._lookup(credential.token), blocking=True)
        if owner is None:
            raise InvalidCredential("unknown")
        return Identity(user_id=owner, method="recording")


def test_wsgi_runs_blocking_steps_inline_and_asgi_in_a_worker_thread() -> None:
    authenticator = _Recording()
    wsgi_app = WSGIAuth(_ok_wsgi, strategy=authenticator)
    assert _wsgi(wsgi_app, "Bearer good", "203.0.113.1")[0] == 200
    assert authenticator.threads == [threading.get_ident()]

    asgi_app = AuthMiddleware(_ok_app, strategy=authenticator)

    async def run() -> tuple[int, int]:
        status = (await _asgi(asgi_app, "Bearer good", "203.0.113.1"))[0]
        return status, threading.get_ident()

    status, loop_thread = asyncio.run(run())
    assert status == 200
    assert authenticator.threads[-1] != loop_thread


def test_an_exception_of_a_step_is_handed_back_to_the_flow() -> None:
    class Broken(_Recording):
        def _lookup(self, token: str) -> str | None:
            raise OSError("store down")

    for status in (
        _wsgi(WSGIAuth(_ok_wsgi, strategy=Broken()), "Bearer good", "203.0.113.1")[0],
        asyncio.run(_asgi(AuthMiddleware(_ok_app, strategy=Broken()), "Bearer x", "::1"))[0],
    ):
        assert status == 503


def test_the_core_flow_needs_no_shell() -> None:
    """The flow is plain Python: a unit test drives it with the sync driver."""
    settings = WSGIAuth(_ok_wsgi, secret=SECRET, audience=AUDIENCE).settings
    ok = run_flow(authenticate(settings, AuthRequest([_good().encode()])))
    assert ok.identity is not None and ok.identity.user_id == "alice"
    assert ok.error is None and ok.cache_until is not None
    missing = run_flow(authenticate(settings, AuthRequest([])))
    assert missing.identity is None and missing.error is not None
    assert missing.error.type == "unauthorized"


def test_the_middleware_knows_only_its_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Auth calls its ``app`` and nothing else: with the design's stack (auth -> rate limit ->
    metering) the limiter's own ``__call__`` runs (no private hot path taken over by auth)."""
    from agenthood_mw import CostMeterMiddleware, PriceTable, RateLimitMiddleware

    calls: list[str] = []
    original = RateLimitMiddleware.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(RateLimitMiddleware, "__call__", counting)
    prices = PriceTable({"m": {"input": "1", "output": "2"}})
    meter = CostMeterMiddleware(_ok_app, prices=prices)
    app = AuthMiddleware(RateLimitMiddleware(meter, max=5), secret=SECRET, audience=AUDIENCE)
    statuses = [asyncio.run(_asgi(app, _good(), "203.0.113.1"))[0] for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    assert calls == ["/me"] * 7
    assert set(vars(app)) == {"app", "settings", "_exempt", "_cache", "_api_header", "_anonymous"}


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 4), attempts=st.lists(st.booleans(), max_size=14))
def test_valid_credentials_always_pass_and_failures_turn_429_after_the_limit(
    limit: int, attempts: list[bool]
) -> None:
    app = WSGIAuth(_ok_wsgi, secret=SECRET, audience=AUDIENCE, failed_auth_limit=f"{limit}/hour")
    failures = 0
    for valid in attempts:
        status = _wsgi(app, _good() if valid else BAD, "203.0.113.50")[0]
        if valid:
            assert status == 200
        else:
            failures += 1
            assert status == (401 if failures <= limit else 429)
