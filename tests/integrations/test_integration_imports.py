"""Integrations are extras: `import agenthood_mw` loads no framework; each loads its own."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("langgraph", "langchain_core", "langchain_tests", "numpy")


def _loaded(statement: str) -> list[str]:
    code = (
        f"import sys\n{statement}\nprint(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [m for m in out.split(",") if m]


def test_import_agenthood_mw_loads_no_framework() -> None:
    assert _loaded("import agenthood_mw, agenthood_mw.wsgi, agenthood_mw.integrations") == []


def test_each_integration_loads_only_its_framework() -> None:
    assert "langchain_tests" not in _loaded("import agenthood_mw.integrations.langgraph")
    lc = _loaded("import agenthood_mw.integrations.langchain")
    assert "langchain_core" in lc and "langgraph" not in lc


def test_public_names() -> None:
    from agenthood_mw.integrations import langchain, langgraph

    assert "ScopedStore" in langgraph.__all__
    assert sorted(langchain.__all__) == ["ScopedByteStore", "ScopedJSONStore"]
