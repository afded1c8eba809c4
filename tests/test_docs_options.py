"""The option tables of the docs match the middlewares' signatures exactly (names, defaults)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import agenthood_mw
import agenthood_mw.wsgi

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| `(?P<name>[a-z_][a-z0-9_]*)` \| (?P<default>[^|]+) \|")


def _table(doc: str) -> dict[str, str]:
    """``{option: default cell}`` of the table under ``## Options`` in ``docs/<doc>``."""
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    section = text.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["name"]] = match["default"].strip()
    return rows


@pytest.mark.parametrize(
    ("doc", "name"),
    [("rate-limiting.md", "RateLimitMiddleware"), ("cost-metering.md", "CostMeterMiddleware")],
)
def test_option_table_matches_the_signature(doc: str, name: str) -> None:
    rows = _table(doc)
    for module in (agenthood_mw, agenthood_mw.wsgi):
        params = dict(inspect.signature(getattr(module, name)).parameters)
        assert params.pop("app").kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert sorted(rows) == sorted(params), (
            f"{doc}: options differ from {module.__name__}.{name}"
        )
        for option, param in params.items():
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, option
            cell = rows[option]
            if param.default is inspect.Parameter.empty:
                assert cell == "required", option
            else:
                assert cell.startswith("`") and cell.endswith("`"), (option, cell)
                assert ast.literal_eval(cell[1:-1]) == param.default, (option, cell)
