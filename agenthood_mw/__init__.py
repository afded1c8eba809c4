"""agenthood-mw: turn an LLM-agent prototype into a multi-user service.

Authentication, per-user rate limiting, cost metering and a memory tier in which every read and
write carries a mandatory :class:`MemoryScope`, as pure-ASGI middleware (and WSGI twins in
:mod:`agenthood_mw.wsgi`).
"""

from __future__ import annotations

from agenthood_mw._context import current_identity
from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._identity import Identity
from agenthood_mw._version import __version__

__all__ = [
    "Identity",
    "MemoryScope",
    "__version__",
    "current_identity",
]
