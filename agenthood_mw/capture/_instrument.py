"""``instrument()`` / ``uninstrument()``: the metered transport inside the official SDKs'
default HTTP clients, for code that cannot pass ``http_client=``.

Each SDK builds its default client from ``_DefaultHttpxClient`` / ``_DefaultAsyncHttpxClient``
in its ``_base_client`` module (also the parents of ``openai.DefaultHttpxClient`` and
``DefaultAsyncHttpxClient``). ``instrument`` replaces their ``__init__`` with one that runs the
original, then wraps the client's transport and mounted (proxy) transports in the metered
transport of the client's HTTP stack (httpx or httpx2); ``uninstrument`` puts the original
functions back. Clients built before ``instrument`` are not changed. Nothing is imported from an
SDK that is not installed or not named.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["instrument", "instrumented", "uninstrument"]

SDKS = ("openai", "anthropic")
_CLASSES = ("_DefaultHttpxClient", "_DefaultAsyncHttpxClient")
_lock = threading.Lock()
# (class, original __init__) per instrumented SDK.
_installed: dict[str, list[tuple[type[Any], Callable[..., None]]]] = {}


def _metered(transport: Any, asynchronous: bool) -> Any:
    if transport is None or type(transport).__name__.startswith("Metered"):
        return transport
    httpx2 = sys.modules.get("httpx2")
    bases = (httpx2.BaseTransport, httpx2.AsyncBaseTransport) if httpx2 is not None else ()
    stack = "httpx2" if bases and isinstance(transport, bases) else "httpx"
    module = importlib.import_module(f"agenthood_mw.capture.{stack}")
    cls = module.MeteredAsyncTransport if asynchronous else module.MeteredTransport
    return cls(transport)


def _patched(original: Callable[..., None], asynchronous: bool) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._transport = _metered(self._transport, asynchronous)
        self._mounts = {k: _metered(v, asynchronous) for k, v in self._mounts.items()}

    __init__.__agenthood_original__ = original  # type: ignore[attr-defined]
    return __init__


def instrument(sdks: Iterable[str] = SDKS) -> list[str]:
    """Meter every default client the named SDKs build from now on; returns the SDKs
    instrumented (those installed; calling it twice changes nothing).

    Raises:
        ValueError: an SDK name other than ``"openai"`` / ``"anthropic"``.
    """
    names = list(sdks)
    for name in names:
        if name not in SDKS:
            raise ValueError(f"instrument(sdks=): unknown SDK {name!r}; expected {SDKS}")
    done = []
    with _lock:
        for name in names:
            if name in _installed:
                done.append(name)
                continue
            if importlib.util.find_spec(name) is None:
                continue
            base = importlib.import_module(f"{name}._base_client")
            patches = []
            for cls_name in _CLASSES:
                cls = getattr(base, cls_name)
                original = cls.__dict__["__init__"]
                cls.__init__ = _patched(original, asynchronous="Async" in cls_name)
                patches.append((cls, original))
            _installed[name] = patches
            done.append(name)
    return done


def uninstrument(sdks: Iterable[str] = SDKS) -> None:
    """Undo :func:`instrument` for the named SDKs (the original ``__init__`` functions are put
    back exactly); SDKs not instrumented are ignored."""
    with _lock:
        for name in list(sdks):
            for cls, original in _installed.pop(name, ()):
                cls.__init__ = original


def instrumented() -> list[str]:
    """The SDKs currently instrumented."""
    with _lock:
        return sorted(_installed)
