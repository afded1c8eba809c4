"""Budgets at the call: token estimates and the reservation one model call holds.

``Meter.reserve_call(...)`` reserves, before a model call is sent, what the call may cost at
most: estimated input tokens x input price + ``max_output_tokens`` x output price. The
:class:`CallReservation` it returns is settled with the real usage (or released when the call
produced none).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from agenthood_mw._core.pricing import nanos_to_decimal

__all__ = ["CHARS_PER_TOKEN", "MESSAGE_OVERHEAD_TOKENS", "CallReservation", "estimate_tokens"]

#: Without tiktoken, a text is estimated at ``ceil(len(text) / CHARS_PER_TOKEN)`` tokens.
CHARS_PER_TOKEN = 4
#: Tokens added per chat message (role and separators), as in OpenAI's counting guide.
MESSAGE_OVERHEAD_TOKENS = 4

_encodings: dict[str, Any] = {}
_enc_lock = threading.Lock()


def _encoding(model: str | None) -> Any:
    """tiktoken's encoding of ``model`` (``o200k_base`` for models it does not know), or
    ``None`` when tiktoken is not installed or cannot load the encoding (its files are
    downloaded once, then cached; without network the heuristic is used). Memoised, failures
    too."""
    try:
        import tiktoken
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return None
    try:
        name = encoding_name_for_model(model) if model else "o200k_base"
    except KeyError:
        name = "o200k_base"
    with _enc_lock:
        if name in _encodings:
            return _encodings[name]
        try:
            enc = tiktoken.get_encoding(name)
        except Exception:  # no cached file and no network
            enc = None
        _encodings[name] = enc
    return enc


def _texts(value: object) -> Iterable[str]:
    """The text parts of a message content: a string, a list of parts or of strings."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key in ("text", "content", "input", "arguments"):
            if key in value:
                yield from _texts(value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


def _count(text: str, enc: Any) -> int:
    if enc is None:
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    return len(enc.encode(text, disallowed_special=()))


def estimate_tokens(text_or_messages: object, model: str | None = None) -> int:
    """Estimate the input tokens of a prompt: a string, or chat messages (a list of
    ``{"role": ..., "content": ...}`` mappings, content a string or a list of parts).

    With tiktoken installed, the model's encoding counts the text (``o200k_base`` for a model
    tiktoken does not know, e.g. Claude: an estimate); otherwise ``ceil(chars / 4)`` per text.
    Each message adds :data:`MESSAGE_OVERHEAD_TOKENS`. Images and audio count nothing.
    """
    enc = _encoding(model)
    if isinstance(text_or_messages, str):
        return _count(text_or_messages, enc)
    if not isinstance(text_or_messages, list | tuple):
        raise TypeError("estimate_tokens(): expected a string or a list of messages")
    total = 0
    for message in text_or_messages:
        total += MESSAGE_OVERHEAD_TOKENS
        total += sum(_count(t, enc) for t in _texts(message))
    return total


class _Meter(Protocol):
    """What a reservation needs of its :class:`~agenthood_mw.metering.Meter`."""

    @property
    def record(self) -> Callable[..., Decimal]: ...

    def _unreserve(self, nanos: int) -> None: ...


class CallReservation:
    """What one model call holds on the run's budgets until its real usage is known.

    Returned by :meth:`Meter.reserve_call`. Call :meth:`settle` with the call's usage (it is
    recorded on the meter) or :meth:`release` when the call produced no usage (refused by the
    provider, failed before a response). Used as a context manager, the reservation is
    released on exit unless it was settled. Settling or releasing twice does nothing.

    Attributes:
        model: the model of the call.
        estimate_nanos: the reserved cost in nano-dollars (``estimate`` in dollars).
        input_tokens: the estimated input tokens; ``max_output_tokens``: the output bound used
            (``None``: none was given, the output was estimated at 0 tokens).
    """

    __slots__ = ("_done", "_meter", "estimate_nanos", "input_tokens", "max_output_tokens", "model")

    def __init__(
        self,
        meter: _Meter,
        model: str,
        estimate_nanos: int,
        input_tokens: int,
        max_output_tokens: int | None,
    ) -> None:
        self._meter = meter
        self.model = model
        self.estimate_nanos = estimate_nanos
        self.input_tokens = input_tokens
        self.max_output_tokens = max_output_tokens
        self._done = False

    @property
    def estimate(self) -> Decimal:
        """The reserved cost in dollars."""
        return nanos_to_decimal(self.estimate_nanos)

    @property
    def done(self) -> bool:
        """``True`` once settled or released."""
        return self._done

    def release(self) -> None:
        """Drop the reservation (the call cost nothing)."""
        if not self._done:
            self._done = True
            self._meter._unreserve(self.estimate_nanos)

    def settle(self, **usage: Any) -> Decimal:
        """Record the call's real usage on the meter (the keywords of :meth:`Meter.record`;
        ``model`` defaults to the reserved one) and drop the reservation. Returns the cost."""
        usage.setdefault("model", self.model)
        try:
            return self._meter.record(**usage)
        finally:
            self.release()

    def __enter__(self) -> CallReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"CallReservation(model={self.model!r}, estimate={self.estimate}, "
            f"input_tokens={self.input_tokens}, max_output_tokens={self.max_output_tokens})"
        )
