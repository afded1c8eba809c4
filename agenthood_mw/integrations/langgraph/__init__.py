"""LangGraph memory under agenthood's isolation (extra ``[langgraph]``).

:class:`ScopedStore` is a ``langgraph.store.base.BaseStore`` and :class:`ScopedCheckpointer` a
checkpointer, both keeping everything inside the caller's :class:`~agenthood_mw.MemoryScope`;
:class:`LangGraphAgent` serves a compiled graph through ``AgenthoodAPI`` with them. See
docs/integrations.md. Importing this package imports LangGraph.
"""

from __future__ import annotations

from agenthood_mw.integrations.langgraph._agent import LangGraphAgent
from agenthood_mw.integrations.langgraph._checkpointer import ScopedCheckpointer
from agenthood_mw.integrations.langgraph._store import ScopedStore

__all__ = ["LangGraphAgent", "ScopedCheckpointer", "ScopedStore"]
