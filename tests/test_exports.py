"""Pins the public API: adding or removing a public name must be a deliberate change."""

from __future__ import annotations

import subprocess
import sys

import agenthood_mw
import agenthood_mw.testing
import agenthood_mw.wsgi

EXPECTED_TOP_LEVEL = {
    "Agent",
    "AgenthoodAPI",
    "AuthMiddleware",
    "Budget",
    "BudgetExhausted",
    "CostEstimator",
    "CostMeterMiddleware",
    "Identity",
    "InMemoryBackend",
    "LLMProvider",
    "MemoryBackend",
    "MemoryScope",
    "Meter",
    "Metering",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "PriceTable",
    "ProviderFailover",
    "RateLimitDecision",
    "RateLimitMiddleware",
    "RateLimiter",
    "RunContext",
    "SQLiteBackend",
    "ScopedMemory",
    "ThinkingBudget",
    "__version__",
    "current_identity",
    "current_meter",
    "memory_from_url",
    "require_identity",
}

EXPECTED_WSGI = {"AuthMiddleware", "CostMeterMiddleware", "RateLimitMiddleware"}

EXPECTED_TESTING = {
    "ADVERSARIAL_IDS",
    "ADVERSARIAL_KEYS",
    "LEAK_PAIRS",
    "NAMESPACE_PAIRS",
    "BackendConformance",
    "FakeClock",
    "bearer_headers",
    "generate_keypair",
    "mint_token",
}


def test_top_level_all_is_pinned() -> None:
    assert set(agenthood_mw.__all__) == EXPECTED_TOP_LEVEL
    assert len(agenthood_mw.__all__) == len(set(agenthood_mw.__all__))


def test_wsgi_all_is_pinned() -> None:
    assert set(agenthood_mw.wsgi.__all__) == EXPECTED_WSGI


def test_testing_all_is_pinned() -> None:
    assert set(agenthood_mw.testing.__all__) == EXPECTED_TESTING


def test_every_exported_name_resolves() -> None:
    for module in (agenthood_mw, agenthood_mw.wsgi, agenthood_mw.testing):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)


def test_wsgi_twins_are_distinct_classes_with_the_same_names() -> None:
    for name in EXPECTED_WSGI:
        asgi_cls = getattr(agenthood_mw, name)
        wsgi_cls = getattr(agenthood_mw.wsgi, name)
        assert asgi_cls is not wsgi_cls
        assert asgi_cls.__name__ == wsgi_cls.__name__ == name


def test_contract_submodules_import() -> None:
    from agenthood_mw.memory.postgres import PostgresBackend
    from agenthood_mw.memory.redis import RedisBackend

    assert PostgresBackend.__name__ == "PostgresBackend"
    assert RedisBackend.__name__ == "RedisBackend"


def test_import_needs_no_extras() -> None:
    """``import agenthood_mw`` must not import redis, psycopg, httpx, uvicorn or pytest (nor,
    with ``agenthood_mw.capture``, an LLM SDK or an HTTP stack)."""
    code = (
        "import sys, agenthood_mw, agenthood_mw.wsgi, agenthood_mw.capture\n"
        "bad = [m for m in ('redis', 'psycopg', 'httpx', 'uvicorn', 'pytest', 'hypothesis',"
        " 'openai', 'anthropic', 'httpx2', 'langchain_core', 'langchain_openai',"
        " 'agents')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_wsgi_twins_take_exactly_the_same_keywords() -> None:
    import inspect

    for name in EXPECTED_WSGI:
        asgi = inspect.signature(getattr(agenthood_mw, name)).parameters
        wsgi = inspect.signature(getattr(agenthood_mw.wsgi, name)).parameters
        assert list(asgi) == list(wsgi), name
        assert [p.default for p in asgi.values()] == [p.default for p in wsgi.values()], name
        assert next(iter(asgi)) == "app"
        assert all(p.kind is p.KEYWORD_ONLY for p in list(asgi.values())[1:]), name


def test_non_callable_app_is_refused_at_construction() -> None:
    import pytest

    from agenthood_mw import PriceTable

    options = {
        "AuthMiddleware": {"secret": "s" * 32},
        "RateLimitMiddleware": {"max": 1},
        "CostMeterMiddleware": {"prices": PriceTable({})},
    }
    for module, kind in ((agenthood_mw, "ASGI"), (agenthood_mw.wsgi, "WSGI")):
        for name, kwargs in options.items():
            with pytest.raises(TypeError, match=f"app: expected an {kind} application"):
                getattr(module, name)("not an app", **kwargs)
