"""``OfflineProvider``: a deterministic stand-in for an LLM, for demos and tests.

It is NOT a language model. Every answer starts with ``[offline]`` and the provider and model
are named ``offline`` / ``agenthood-offline-1`` in traces and costs, so nobody mistakes its
output for a model's. Token counts follow the usual ~4 characters per token estimate of the
actual prompt and answer, so the meter shows realistic costs.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from agenthood_mw.api._provider import (
    ChatMessage,
    Completion,
    Usage,
    check_priced,
    record_usage,
    validate_messages,
)

__all__ = ["OFFLINE_MODEL", "OfflineProvider", "estimate_prompt_tokens", "estimate_tokens"]

#: The model name the offline provider reports (give it a price to see costs).
OFFLINE_MODEL = "agenthood-offline-1"

_PER_MESSAGE_OVERHEAD = 4
_LABEL = "[offline]"

_PLAN = (
    "Read the code and notes the task touches",
    "Write down the expected behaviour",
    "Make the smallest change that achieves it",
    "Run the tests and fix what breaks",
    "Summarise the change for review",
)
_LIST_HINTS = ("numbered list", "list of", "steps")
#: How the offline stream cuts its answer: each word with the blanks before it.
_PIECES = re.compile(r"\s*\S+")


def estimate_tokens(text: str) -> int:
    """Rough token count of ``text`` (~4 characters per token, at least 1 for non-empty)."""
    return math.ceil(len(text) / 4) if text else 0


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Rough prompt token count of chat ``messages`` (content estimate + per-message overhead)."""
    return sum(estimate_tokens(str(m.get("content", ""))) + _PER_MESSAGE_OVERHEAD for m in messages)


def _default_answer(messages: Sequence[dict[str, Any]]) -> str:
    """A numbered plan (3 to 5 steps, chosen by a hash of the conversation) when the system
    prompt asks for a list; otherwise one line acknowledging the last line of the request."""
    system = " ".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if any(hint in system.lower() for hint in _LIST_HINTS):
        digest = hashlib.sha256(
            "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages).encode()
        ).digest()
        count = 3 + digest[0] % 3
        return "\n".join(f"{i + 1}. {step}" for i, step in enumerate(_PLAN[:count]))
    lines = [line.strip() for line in last_user.splitlines() if line.strip()]
    subject = " ".join(lines[-1].split()) if lines else "the request"
    if len(subject) > 80:
        subject = subject[:79] + "…"
    return f"done: {subject}"


class OfflineProvider:
    """A deterministic, offline :class:`~agenthood_mw.api.LLMProvider` (clearly labelled).

    It also streams (:meth:`stream`, a :class:`~agenthood_mw.api.StreamingLLMProvider`): the same
    answer, word by word.

    The same messages always give the same answer, prefixed with ``[offline]``: a numbered plan
    of 3 to 5 generic steps when the system prompt asks for a list or steps, otherwise one line
    acknowledging the request (``[offline] done: ...``). Pass ``responder`` to script answers in
    tests (it receives the validated messages and returns the text; the label is still added).

    Args:
        name: provider name in traces and costs (default ``"offline"``).
        model: reported model name (default :data:`OFFLINE_MODEL`).
        responder: optional ``messages -> text`` function.
    """

    def __init__(
        self,
        *,
        name: str = "offline",
        model: str = OFFLINE_MODEL,
        responder: Callable[[list[dict[str, Any]]], str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name: must be a non-empty str")
        if not isinstance(model, str) or not model:
            raise ValueError("model: must be a non-empty str")
        if responder is not None and not callable(responder):
            raise TypeError("responder: must be a callable")
        self.name = name
        self.model = model
        self._responder = responder or _default_answer
        self.calls = 0

    def __repr__(self) -> str:
        return f"OfflineProvider(name={self.name!r}, model={self.model!r})"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """Answer deterministically; usage is recorded on the current meter."""
        completion = self._answer(messages, model, max_tokens, temperature)
        record_usage(completion)
        return completion

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """The answer of :meth:`complete`, word by word (each piece with the blanks before it).

        The usage is recorded on the meter current when the stream started once it ends; a
        consumer that stops early is charged the whole prompt and the output sent so far.
        """
        from agenthood_mw.api._provider import bound_meter

        meter = bound_meter()
        completion = self._answer(messages, model, max_tokens, temperature)
        sent = 0
        try:
            for match in _PIECES.finditer(completion.text):
                piece = match.group()
                sent += len(piece)  # handed over once yielded, even if the consumer stops
                yield piece
        finally:
            output = completion.usage.output_tokens
            if sent < len(completion.text):
                output = estimate_tokens(completion.text[:sent])
            usage = Usage(input_tokens=completion.usage.input_tokens, output_tokens=output)
            record_usage(replace(completion, usage=usage), meter=meter)

    def _answer(
        self,
        messages: Sequence[ChatMessage],
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> Completion:
        del temperature
        checked = validate_messages(messages)
        check_priced(model or self.model, self.name)
        text = f"{_LABEL} {self._responder(checked)}"
        finish = "stop"
        if max_tokens is not None:
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                raise ValueError("max_tokens must be a positive int")
            if estimate_tokens(text) > max_tokens:
                text, finish = text[: max_tokens * 4], "length"
        input_tokens = estimate_prompt_tokens(checked)
        self.calls += 1
        return Completion(
            text=text,
            usage=Usage(input_tokens=input_tokens, output_tokens=estimate_tokens(text)),
            model=model or self.model,
            provider=self.name,
            finish_reason=finish,
        )

    async def aclose(self) -> None:
        """Nothing to release."""
