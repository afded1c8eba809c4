"""The LangGraph integration imports its framework only when it is imported itself."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_agenthood_imports_no_langgraph() -> None:
    code = (
        "import sys, agenthood_mw, agenthood_mw.api, agenthood_mw.memory, "
        "agenthood_mw.integrations\n"
        "print(','.join(m for m in ('langgraph', 'langchain_core') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_the_package_face_exports_the_adapters() -> None:
    pytest.importorskip("langgraph.checkpoint.base")
    import agenthood_mw.integrations.langgraph as lg

    assert {"LangGraphAgent", "ScopedCheckpointer"} <= set(lg.__all__)
    for name in lg.__all__:
        assert getattr(lg, name).__module__.startswith("agenthood_mw.integrations.langgraph")
