"""Read token usage from OpenAI-style and Anthropic-style responses (dicts or SDK objects).

Every helper returns a :class:`ResponseUsage` in the meter's OpenAI semantics: ``input_tokens``
counts every prompt token, cache reads and writes included as subsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agenthood_mw._core.pricing import Usage

__all__ = ["AnthropicStreamUsage", "ResponseUsage", "anthropic_usage", "openai_usage", "usage_of"]


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"token count must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class ResponseUsage:
    """Usage read from a provider response: the model name and the token counts."""

    model: str | None
    usage: Usage
    provider: str | None = None


def openai_usage(response: Any) -> ResponseUsage | None:
    """Usage of an OpenAI Chat Completions or Responses result, or of a stream chunk.

    Returns ``None`` when ``response`` carries no usage (an ordinary stream chunk; only the
    final chunk has usage when ``stream_options={"include_usage": True}``).
    """
    usage = _get(response, "usage")
    if usage is None:
        return None
    model = _get(response, "model")
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        inp = _int(_get(usage, "prompt_tokens"))
        out = _int(_get(usage, "completion_tokens"))
        cached = _int(_get(_get(usage, "prompt_tokens_details"), "cached_tokens"))
        reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    else:  # Responses API
        inp = _int(_get(usage, "input_tokens"))
        out = _int(_get(usage, "output_tokens"))
        cached = _int(_get(_get(usage, "input_tokens_details"), "cached_tokens"))
        reasoning = _int(_get(_get(usage, "output_tokens_details"), "reasoning_tokens"))
    return ResponseUsage(
        model,
        Usage(inp, out, cached_input_tokens=cached, reasoning_tokens=reasoning),
        "openai",
    )


def anthropic_usage(response: Any) -> ResponseUsage | None:
    """Usage of an Anthropic Messages result (``input_tokens`` excludes cache there).

    Cache reads become ``cached_input_tokens`` and cache writes
    ``cache_creation_input_tokens``; all three are added into ``input_tokens``.
    """
    usage = _get(response, "usage")
    if usage is None:
        return None
    base = _int(_get(usage, "input_tokens"))
    read = _int(_get(usage, "cache_read_input_tokens"))
    write = _int(_get(usage, "cache_creation_input_tokens"))
    out = _int(_get(usage, "output_tokens"))
    return ResponseUsage(
        _get(response, "model"),
        Usage(
            base + read + write, out, cached_input_tokens=read, cache_creation_input_tokens=write
        ),
        "anthropic",
    )


def usage_of(response: Any) -> ResponseUsage | None:
    """Detect the response style (OpenAI or Anthropic) and read its usage."""
    usage = _get(response, "usage")
    if usage is None:
        return None
    if (
        _get(usage, "cache_read_input_tokens") is not None
        or _get(usage, "cache_creation_input_tokens") is not None
        or _get(response, "type") == "message"
    ):
        return anthropic_usage(response)
    return openai_usage(response)


class AnthropicStreamUsage:
    """Accumulates usage over an Anthropic Messages event stream.

    ``message_start`` carries the input counts, each ``message_delta`` the cumulative output
    count. Feed every event; read :attr:`result` at the end (``None`` before ``message_start``).
    """

    def __init__(self) -> None:
        self._model: str | None = None
        self._input: dict[str, int] | None = None
        self._output = 0

    def feed(self, event: Any) -> None:
        kind = _get(event, "type")
        if kind == "message_start":
            message = _get(event, "message")
            usage = _get(message, "usage")
            self._model = _get(message, "model")
            self._input = {
                "base": _int(_get(usage, "input_tokens")),
                "read": _int(_get(usage, "cache_read_input_tokens")),
                "write": _int(_get(usage, "cache_creation_input_tokens")),
            }
            self._output = _int(_get(usage, "output_tokens"))
        elif kind == "message_delta":
            usage = _get(event, "usage")
            if usage is not None:
                self._output = max(self._output, _int(_get(usage, "output_tokens")))

    @property
    def result(self) -> ResponseUsage | None:
        if self._input is None:
            return None
        i = self._input
        return ResponseUsage(
            self._model,
            Usage(
                i["base"] + i["read"] + i["write"],
                self._output,
                cached_input_tokens=i["read"],
                cache_creation_input_tokens=i["write"],
            ),
            "anthropic",
        )
