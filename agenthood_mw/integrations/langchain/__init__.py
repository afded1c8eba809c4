"""LangChain key-value stores on agenthood's scoped backends (extra ``[langchain]``).

:class:`ScopedByteStore` (``bytes`` values) and :class:`ScopedJSONStore` (JSON values) are
``langchain_core.stores.BaseStore`` implementations; see ``docs/integrations.md``. Importing
this package imports ``langchain_core``.
"""

from __future__ import annotations

from agenthood_mw.integrations.langchain._stores import ScopedByteStore, ScopedJSONStore

__all__ = ["ScopedByteStore", "ScopedJSONStore"]
