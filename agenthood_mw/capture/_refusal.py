"""The ``BudgetExhausted`` a transport raises, shaped so that the SDKs neither wrap nor retry it.

The openai SDK re-raises its own ``OpenAIError`` as-is but wraps other transport errors of the
HTTP stack in ``APIConnectionError`` (and retries them); the anthropic SDK wraps *every*
exception that is not an ``AnthropicError`` in a retried ``APIConnectionError``. So the refusal
is re-raised as a subclass of ``BudgetExhausted`` *and* of the base error of each SDK already
imported (``sys.modules``; nothing is imported here): ``except BudgetExhausted`` still catches
it, and each SDK passes it through on the first attempt.
"""

from __future__ import annotations

import sys
import threading

from agenthood_mw.metering import BudgetExhausted

__all__ = ["sdk_refusal"]

_BASES = (("openai", "OpenAIError"), ("anthropic", "AnthropicError"))
_cache: dict[tuple[type[BaseException], ...], type[BudgetExhausted]] = {}
_lock = threading.Lock()


def _refusal_class() -> type[BudgetExhausted]:
    bases: list[type[BaseException]] = []
    for module_name, name in _BASES:
        module = sys.modules.get(module_name)
        base = getattr(module, name, None) if module is not None else None
        if isinstance(base, type) and issubclass(base, Exception):
            bases.append(base)
    key = tuple(bases)
    with _lock:
        cls = _cache.get(key)
        if cls is None:
            cls = type("BudgetExhausted", (BudgetExhausted, *bases), {})
            cls.__module__ = BudgetExhausted.__module__
            _cache[key] = cls
    return cls


def sdk_refusal(error: BudgetExhausted) -> BudgetExhausted:
    """``error`` as an exception the loaded SDKs pass through unchanged (same reason)."""
    cls = _refusal_class()
    if type(error) is cls:
        return error
    return cls(error.reason, retry_after=error.retry_after)
