"""The demo service of ``agenthood serve`` (no APP): three agents, auth, rate limits, metering.

``create_app()`` is the uvicorn factory (``agenthood_mw._cli._demo:create_app``); it reads
:mod:`agenthood_mw._cli._settings` from the environment, so every worker builds the same app.
"""

from __future__ import annotations

import logging

from agenthood_mw._cli._settings import AUDIENCE, Settings, load_settings
from agenthood_mw.api import (
    DEMO_PRICES,
    AgenthoodAPI,
    LLMProvider,
    OfflineProvider,
    OpenAICompatibleProvider,
    ProviderFailover,
)
from agenthood_mw.api.demo import demo_agents
from agenthood_mw.auth import AuthMiddleware, SQLiteKeyStore
from agenthood_mw.metering import PriceTable, ThinkingBudget
from agenthood_mw.ratelimit import RateLimitMiddleware

__all__ = ["RATE_BURST", "RATE_MAX", "RATE_WINDOW", "build_demo_app", "create_app"]

logger = logging.getLogger("agenthood_mw.cli")

#: The demo's rate limit: the seed's 20 requests per minute per user, bursts of 5.
RATE_WINDOW, RATE_MAX, RATE_BURST = "1m", 20, 5
#: Paths reachable without a credential and never rate limited.
PUBLIC_PATHS = ("/health", "/openapi.json")


def _provider(settings: Settings, prices: PriceTable) -> LLMProvider:
    offline = OfflineProvider()
    if settings.provider_url is None or settings.provider_model is None:
        return offline
    if settings.provider_model not in prices:
        logger.warning(
            "demo: the remote model %r has no price in the demo's price table: its tokens are "
            "metered (ledger, traces, token budgets) but cost $0; serve your own AgenthoodAPI "
            "with a PriceTable that prices it to meter real costs",
            settings.provider_model,
        )
    remote = OpenAICompatibleProvider(
        model=settings.provider_model,
        base_url=settings.provider_url,
        api_key=settings.provider_api_key,
        name="remote",
    )
    return ProviderFailover([remote, offline])


def build_demo_app(settings: Settings) -> AgenthoodAPI:
    """The demo :class:`AgenthoodAPI` for ``settings`` (stores created on demand)."""
    settings.ensure_data_dir()
    secret = settings.jwt_secret(create=True)
    # Only the offline model has a (demo) price; a remote model is metered in tokens at $0,
    # priced by the requested name (a dated snapshot in the answer does not change that).
    prices = PriceTable(DEMO_PRICES, unknown="zero")
    api = AgenthoodAPI(
        agents=demo_agents(),
        memory={"isolation": "per-user", "backend": settings.memory_url},
        provider=_provider(settings, prices),
        prices=prices,
        ledger=settings.ledger_url,
        traces=settings.ledger_url,
        thinking_budget=ThinkingBudget(max_steps=20, max_tokens=50_000, max_seconds=120),
    )
    api.add_middleware(
        RateLimitMiddleware,
        window=RATE_WINDOW,
        max=RATE_MAX,
        burst=RATE_BURST,
        storage=settings.rate_limit_storage,
        exempt_paths=PUBLIC_PATHS,
    )
    api.add_middleware(
        AuthMiddleware,
        strategy=["jwt", "api_key"],
        secret=secret,
        algorithms=["HS256"],
        audience=AUDIENCE,
        key_store=SQLiteKeyStore(settings.keys_path),
        exempt_paths=PUBLIC_PATHS,
    )
    return api


def create_app() -> AgenthoodAPI:
    """uvicorn factory: the demo app configured from the environment."""
    return build_demo_app(load_settings())
