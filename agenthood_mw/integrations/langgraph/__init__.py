"""LangGraph memory under agenthood's isolation (extra ``[langgraph]``).

:class:`ScopedCheckpointer` keeps every thread's checkpoints inside the caller's
:class:`~agenthood_mw.MemoryScope`; :class:`LangGraphAgent` serves a compiled graph through
``AgenthoodAPI`` with it. See docs/integrations.md.
"""

from __future__ import annotations

from agenthood_mw.integrations.langgraph._agent import LangGraphAgent
from agenthood_mw.integrations.langgraph._checkpointer import ScopedCheckpointer

__all__ = ["LangGraphAgent", "ScopedCheckpointer"]
