"""The demo service of ``agenthood serve`` (no APP): three agents, auth, rate limits, metering.

``create_app()`` is the uvicorn factory (``agenthood_mw._cli._demo:create_app``); it reads
:mod:`agenthood_mw._cli._settings` from the environment, so every worker builds the same app.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

from agenthood_mw._cli._settings import AUDIENCE, ConfigError, Settings, load_settings
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

__all__ = [
    "RATE_BURST",
    "RATE_MAX",
    "RATE_WINDOW",
    "build_demo_app",
    "create_app",
    "demo_prices",
]

logger = logging.getLogger("agenthood_mw.cli")

#: The demo's rate limit: the seed's 20 requests per minute per user, bursts of 5.
RATE_WINDOW, RATE_MAX, RATE_BURST = "1m", 20, 5
#: Paths reachable without a credential and never rate limited.
PUBLIC_PATHS = ("/health", "/openapi.json")


#: Largest magnitude of any number in a price file (prices, token limits): far above any real
#: entry, far below what would overflow a cost computed from it.
MAX_PRICE_FILE_NUMBER = Decimal(10) ** 15


def _bounded(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite() or not -MAX_PRICE_FILE_NUMBER <= value <= MAX_PRICE_FILE_NUMBER:
        raise _OutOfRange(text)
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 16:  # checked before int(): 4 300+ digits would raise
        raise _OutOfRange(text)
    return int(_bounded(text))


class _OutOfRange(ValueError):
    """A number of a price file above :data:`MAX_PRICE_FILE_NUMBER`."""


def _load_price_json(path: Path) -> Any:
    """The file's JSON: money never goes through a float, every number is bounded."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh, parse_float=_bounded, parse_int=_bounded_int)


def _read_price_file(path: Path) -> dict[str, Any]:
    where = f"AGENTHOOD_PRICES: {path}"
    try:
        data = _load_price_json(path)
    except FileNotFoundError:
        raise ConfigError(f"AGENTHOOD_PRICES: no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"AGENTHOOD_PRICES: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except _OutOfRange as exc:
        raise ConfigError(
            f"{where} holds the number {str(exc)[:40]}, above {MAX_PRICE_FILE_NUMBER:,f}"
        ) from None
    except (ValueError, RecursionError, ArithmeticError):  # 4 300+ digits, deep nesting
        raise ConfigError(f"{where} is not a usable JSON price file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object of model entries")
    _check_price_strings(data, where)
    return data


def _check_price_strings(data: dict[str, Any], where: str) -> None:
    """Prices written as decimal strings (``"0.15"``) are bounded like numbers."""
    for model, entry in data.items():
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if not isinstance(value, str):
                continue
            try:
                _bounded(value.strip())
            except _OutOfRange:
                raise ConfigError(
                    f"{where}: {str(model)[:40]}.{str(key)[:40]} is {value[:40]!r}, above "
                    f"{MAX_PRICE_FILE_NUMBER:,f}"
                ) from None
            except ArithmeticError:  # not a number: PriceTable names it
                continue


def demo_prices(settings: Settings) -> PriceTable:
    """The demo's price table: the offline model's demo price, plus ``AGENTHOOD_PRICES``.

    The file uses LiteLLM's ``model_prices_and_context_window.json`` layout (``*_cost_per_token``
    keys; non-chat entries are skipped) or :class:`PriceTable`'s short form (dollars per million
    tokens); its entries win over the demo's. Unknown models stay metered at $0 with a warning.
    Raises :class:`ConfigError` (one line naming the variable) for an unusable file.
    """
    entries: dict[str, Any] = dict(DEMO_PRICES)
    path = settings.prices_path
    if path is not None:
        data = _read_price_file(path)
        try:
            own = PriceTable(data)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ConfigError(f"AGENTHOOD_PRICES: {path}: {exc}") from None
        if not any(own.price(m).output or not own.price(m).input for m in own.models()):
            raise ConfigError(
                f"AGENTHOOD_PRICES: {path} prices no chat model (need input and output prices)"
            )
        entries.update(data)
    return PriceTable(entries, unknown="zero")


def _provider(settings: Settings, prices: PriceTable) -> LLMProvider:
    offline = OfflineProvider()
    if settings.provider_url is None or settings.provider_model is None:
        return offline
    if settings.provider_model not in prices:
        where = (
            f"the price file {settings.prices_path} (AGENTHOOD_PRICES)"
            if settings.prices_path is not None
            else "the demo's price table"
        )
        logger.warning(
            "demo: the remote model %r has no price in %s: its tokens are metered (ledger, "
            "traces, token budgets) but cost $0; set AGENTHOOD_PRICES to a JSON price file "
            "(LiteLLM's model_prices_and_context_window.json or {model: {input, output}} in "
            "dollars per million tokens) that prices it",
            settings.provider_model,
            where,
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
    # The offline model has a demo price; a remote model is priced by AGENTHOOD_PRICES (by the
    # requested name when the answer names a dated snapshot), else metered in tokens at $0.
    prices = demo_prices(settings)
    api = AgenthoodAPI(
        agents=demo_agents(),
        memory={"isolation": "per-user", "backend": settings.memory_url},
        provider=_provider(settings, prices),
        prices=prices,
        ledger=settings.ledger_url,
        traces=settings.ledger_url,
        thinking_budget=ThinkingBudget(max_steps=20, max_tokens=50_000, max_seconds=120),
        health_cache=settings.health_cache,
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
