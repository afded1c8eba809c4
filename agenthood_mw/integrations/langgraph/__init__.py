"""LangGraph memory under agenthood's isolation (extra ``[langgraph]``).

:class:`ScopedCheckpointer` keeps every thread's checkpoints inside the caller's
:class:`~agenthood_mw.MemoryScope`. See docs/integrations.md.
"""

from __future__ import annotations

from agenthood_mw.integrations.langgraph._checkpointer import ScopedCheckpointer

__all__ = ["ScopedCheckpointer"]
