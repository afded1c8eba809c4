"""LangChain hook: model usage and chain / tool steps forwarded to the current meter.

:class:`MeteringCallbackHandler` charges ``current_meter()`` from each LLM result's
``usage_metadata`` and puts chain and tool starts into the run's trace. :func:`install`
registers one handler for every chain (no chain changes); :func:`uninstall` turns it off.
Requires ``langchain-core`` (the ``[langchain]`` extra). See ``docs/capture.md``.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from agenthood_mw.metering import Meter, current_meter

__all__ = ["MeteringCallbackHandler", "install", "installed", "uninstall"]


def _meter() -> Meter | None:
    try:
        meter = current_meter()
    except LookupError:
        return None
    return None if meter.closed else meter


def _name(serialized: dict[str, Any] | None, kwargs: dict[str, Any]) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        found = serialized.get("name")
        if isinstance(found, str) and found:
            return found
        ident = serialized.get("id")
        if isinstance(ident, list) and ident:
            return str(ident[-1])
    return "unknown"


def _int(details: Any, key: str) -> int:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, int) and value > 0 else 0


def _first_message(response: LLMResult) -> Any:
    """The first generation's message that carries ``usage_metadata`` (``None`` if none)."""
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            if getattr(message, "usage_metadata", None):
                return message
    return None


def _model(message: Any, response: LLMResult, requested: str | None) -> str | None:
    meta = getattr(message, "response_metadata", None) or {}
    out = response.llm_output or {}
    for found in (meta.get("model_name"), meta.get("model"), out.get("model_name"), requested):
        if isinstance(found, str) and found:
            return found
    return None


class MeteringCallbackHandler(BaseCallbackHandler):
    """Forwards LangChain callbacks to :func:`~agenthood_mw.metering.current_meter`.

    * ``on_llm_end``: one ``record(...)`` from the message's ``usage_metadata``
      (``input_tokens``, ``output_tokens``, ``input_token_details.cache_read`` /
      ``cache_creation``, ``output_token_details.reasoning``), model from the response
      metadata or the invocation parameters, idempotency key ``langchain:<run id>`` (the same
      LLM run reported twice, e.g. by two registered handlers, is charged once).
    * ``on_chain_start`` / ``on_tool_start``: ``annotate("langchain_chain" | "langchain_tool",
      name=...)``; a charge-free LLM end is annotated ``langchain_llm``.

    ``charge=False``: the hook only traces (``langchain_llm`` events); use it when the model's
    HTTP traffic is already metered at the wire (a metered transport, or
    :func:`agenthood_mw.capture.instrument` reaching the model's client), since the wire
    capture records without a shared idempotency key and the same call would otherwise be
    charged twice. Outside a meter nothing happens.
    """

    run_inline = True  # called in the caller's context, so current_meter() is the run's meter
    raise_error = False

    def __init__(self, *, charge: bool = True) -> None:
        if not isinstance(charge, bool):
            raise TypeError("charge: expected a bool")
        self.charge = charge
        self._models: dict[UUID, str] = {}
        self._lock = threading.Lock()

    # -- trace ---------------------------------------------------------------------------------
    def on_chain_start(
        self, serialized: dict[str, Any], inputs: dict[str, Any], **kwargs: Any
    ) -> None:
        meter = _meter()
        if meter is not None:
            meter.annotate("langchain_chain", name=_name(serialized, kwargs))

    def on_tool_start(self, serialized: dict[str, Any], input_str: str, **kwargs: Any) -> None:
        meter = _meter()
        if meter is not None:
            meter.annotate("langchain_tool", name=_name(serialized, kwargs))

    # -- model calls ---------------------------------------------------------------------------
    def _started(self, run_id: UUID, kwargs: dict[str, Any]) -> None:
        params = kwargs.get("invocation_params") or {}
        model = params.get("model") or params.get("model_name")
        if isinstance(model, str) and model:
            with self._lock:
                self._models[run_id] = model

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._started(run_id, kwargs)

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[Any], *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._started(run_id, kwargs)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._models.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            requested = self._models.pop(run_id, None)
        meter = _meter()
        message = _first_message(response)
        if meter is None or message is None:
            return
        model = _model(message, response, requested)
        usage = message.usage_metadata
        if model is None or not self.charge:
            meter.annotate("langchain_llm", model=model, charged=False)
            return
        inp = usage.get("input_token_details") or {}
        out = usage.get("output_token_details") or {}
        meter.record(
            model=model,
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cached_input_tokens=_int(inp, "cache_read"),
            cache_creation_input_tokens=_int(inp, "cache_creation"),
            reasoning_tokens=_int(out, "reasoning"),
            idempotency_key=f"langchain:{run_id}",
        )


# -- registration ------------------------------------------------------------------------------
class _Slot:
    """What ``langchain_core``'s configure hook reads (it only calls ``get()``): the installed
    handler in every thread and task, unlike a ``ContextVar`` set in one context."""

    handler: MeteringCallbackHandler | None = None

    def get(self) -> MeteringCallbackHandler | None:
        return self.handler


_install_lock = threading.Lock()
_slot = _Slot()
_registered = False


def install(*, charge: bool = True) -> MeteringCallbackHandler:
    """Add one :class:`MeteringCallbackHandler` to every LangChain run in the process (through
    ``langchain_core``'s configure hook; chains need no ``callbacks=``). Calling it again
    changes the ``charge`` mode of the same handler."""
    global _registered
    handler = MeteringCallbackHandler(charge=charge)  # validates charge
    with _install_lock:
        if _slot.handler is not None:
            _slot.handler.charge = charge
            return _slot.handler
        if not _registered:
            from langchain_core.tracers.context import register_configure_hook

            register_configure_hook(cast("ContextVar[Any | None]", _slot), True)
            _registered = True
        _slot.handler = handler
        return handler


def uninstall() -> None:
    """Stop the handler :func:`install` added (runs configured afterwards get none)."""
    with _install_lock:
        _slot.handler = None


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _slot.handler is not None
