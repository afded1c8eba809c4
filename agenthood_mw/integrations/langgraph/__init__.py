"""LangGraph memory on agenthood's scoped backends (extra ``[langgraph]``).

:class:`ScopedStore` is a ``langgraph.store.base.BaseStore``; see ``docs/integrations.md``.
Importing this package imports LangGraph.
"""

from __future__ import annotations

from agenthood_mw.integrations.langgraph._store import ScopedStore

__all__ = ["ScopedStore"]
