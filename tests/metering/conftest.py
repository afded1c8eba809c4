"""Fixtures of the metering tests: prices, a test identity middleware, every ledger backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthood_mw import Identity
from agenthood_mw.metering import PriceTable

PRICES = {
    "gpt-4o": {"input": "2.50", "output": "10.00", "cached_input": "1.25"},
    "claude-sonnet": {
        "input": "3.00",
        "output": "15.00",
        "cached_input": "0.30",
        "cache_write": "3.75",
    },
    "tiny": {"input": "0.15", "output": "0.60"},
}


@pytest.fixture
def prices() -> PriceTable:
    return PriceTable(PRICES)


def _with_identity(app: ASGIApp) -> ASGIApp:
    """Stands in for AuthMiddleware: ``x-test-user`` / ``x-test-tenant`` become scope["user"]."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers", ()))
            user = headers.get(b"x-test-user")
            if user:
                tenant = headers.get(b"x-test-tenant")
                scope["user"] = Identity(
                    user_id=user.decode(), tenant=tenant.decode() if tenant else None
                )
        await app(scope, receive, send)

    return middleware


@pytest.fixture
def with_identity() -> Callable[[ASGIApp], ASGIApp]:
    return _with_identity


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A ledger URL of each backend (PostgreSQL in a throwaway schema)."""
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/costs.db"
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}"


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Any]:
    from agenthood_mw.metering import ledger_from_url

    led = ledger_from_url(ledger_url)
    yield led
    await led.close()
