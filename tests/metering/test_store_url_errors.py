"""Bad ledger, trace and budget store URLs fail at construction naming the option."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agenthood_mw.metering import (
    CostMeterMiddleware,
    PriceTable,
    ledger_from_url,
    trace_store_from_url,
)

PRICES = PriceTable({"tiny": {"input": "0.15", "output": "0.60"}})


async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
    raise AssertionError


def test_ledger_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent_dir" / "costs.db"
    with pytest.raises(ValueError, match=r"^ledger: path: directory .* does not exist"):
        ledger_from_url(f"sqlite:///{missing}")
    with pytest.raises(ValueError, match=r"^ledger: path: directory"):
        CostMeterMiddleware(app, prices=PRICES, ledger=f"sqlite:///{missing}")
    assert not missing.parent.exists()


def test_ledger_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a SQLite database, just text " * 100)
    with pytest.raises(ValueError, match=r"^ledger: "):
        ledger_from_url(f"sqlite:///{junk}")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:hunter2@127.0.0.1:notaport/db",
        "postgres://u@127.0.0.1:70000/db",
        "postgresql://u@127.0.0.1/db?not_a_libpq_option=1",
    ],
)
def test_malformed_postgres_ledger_url_fails_fast(url: str) -> None:
    pytest.importorskip("psycopg_pool")
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"^ledger: dsn: ") as info:
        ledger_from_url(url)
    assert time.monotonic() - started < 2  # no pool timeout waited for
    assert "hunter2" not in str(info.value)


def test_unsupported_ledger_url_does_not_repeat_the_password() -> None:
    with pytest.raises(ValueError, match=r"^ledger: unsupported URL") as info:
        ledger_from_url("mysql://user:hunter2@db/costs")
    assert "hunter2" not in str(info.value)


def test_trace_store_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent_dir" / "traces.db"
    # the message names the path; ``traces:`` is added by trace_store_from_url's callers
    with pytest.raises(ValueError, match=r"path: directory .* does not exist"):
        trace_store_from_url(f"sqlite:///{missing}")
    with pytest.raises(ValueError, match=r"path: directory .* does not exist"):
        CostMeterMiddleware(app, prices=PRICES, traces=f"sqlite:///{missing}")


def test_malformed_postgres_trace_url_fails_fast() -> None:
    pytest.importorskip("psycopg_pool")
    with pytest.raises(ValueError, match=r"dsn: invalid port 'notaport'"):
        trace_store_from_url("postgresql://u@127.0.0.1:notaport/db")


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/0?socket_timeout=soon"]
)
def test_malformed_budget_storage_url(url: str) -> None:
    with pytest.raises(ValueError, match=r"^budget_storage: "):
        CostMeterMiddleware(app, prices=PRICES, budget_storage=url)


def test_malformed_token_storage_url_fails_at_construction() -> None:
    # The storage URL is checked by the token RateLimiter when the middleware is built.
    with pytest.raises(ValueError, match=r"storage: cannot parse"):
        CostMeterMiddleware(
            app,
            prices=PRICES,
            tokens_per_minute=1000,
            token_storage="redis://127.0.0.1:notaport/0",
        )
