from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agenthood_mw.metering import CostMeterMiddleware, PriceTable, trace_store_from_url

PRICES = PriceTable({"tiny": {"input": "0.15", "output": "0.60"}})


async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise AssertionError


@pytest.mark.parametrize("traces", ["memory://", None])
def test_trace_retention_is_named(traces: str | None) -> None:
    with pytest.raises(ValueError, match=r"^trace_retention: "):
        CostMeterMiddleware(app, prices=PRICES, traces=traces, trace_retention="forever")


def test_token_storage_is_named() -> None:
    with pytest.raises(ValueError, match=r"^token_storage: cannot parse .*notaport"):
        CostMeterMiddleware(
            app, prices=PRICES, tokens_per_minute=1000, token_storage="redis://h:notaport/0"
        )


def test_trace_store_errors_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent_dir" / "traces.db"
    with pytest.raises(ValueError, match=r"^traces: path: directory .* does not exist"):
        trace_store_from_url(f"sqlite:///{missing}")
    with pytest.raises(ValueError, match=r"^traces: path: directory"):
        CostMeterMiddleware(app, prices=PRICES, traces=f"sqlite:///{missing}")
    with pytest.raises(ValueError, match=r"^traces: dsn: invalid port"):
        trace_store_from_url("postgresql://u:hunter2@127.0.0.1:notaport/db")
    with pytest.raises(ValueError, match=r"^traces: unsupported URL") as info:
        trace_store_from_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)
