"""The OpenAI-compatible surface: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Sans-I/O: requests in, bodies and chunks out; ``AgenthoodAPI`` runs the agent exactly as
``POST /agents/{name}/run`` does (same validation order, metering, budgets and scoping).

The mapping (documented in ``docs/api.md``): ``model`` is the agent's name; the task is the
text of the last message, which must be a ``user`` message; the whole conversation (system
messages and earlier turns included) is given to the agent as ``RunContext.messages``. The
answer is the run's output; ``usage`` holds the run's real token counts and the extension field
``agenthood`` the run response itself (``runId``, ``cost``, ``memoryScope``, ``stopReason`` ...).
"""

from __future__ import annotations

import json
import time
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.responses import Response

from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw._errors import HTTPError
from agenthood_mw.api._request import RunRequestError, _load, check_task, parse_budget
from agenthood_mw.api._runner import COMPLETED, render_response
from agenthood_mw.api._sse import encode_data

__all__ = [
    "DONE",
    "EXTENSION",
    "ChatRequest",
    "ChatStream",
    "completion_body",
    "model_body",
    "models_body",
    "openai_error",
    "parse_chat_request",
]

#: The name of the extension field holding the run response (cost, runId, memoryScope ...).
EXTENSION: Final = "agenthood"
#: The last line of an OpenAI stream.
DONE: Final = b"data: [DONE]\n\n"
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})
#: Agents own their tools: a request that brings its own is refused, not silently ignored.
_REFUSED: Final = ("tools", "functions", "tool_choice", "function_call")
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat completion request."""

    model: str
    task: str
    messages: tuple[dict[str, str], ...]
    stream: bool = False
    include_usage: bool = False
    thinking_budget: ThinkingBudget | None = None


def _invalid(type_: str, message: str, status: int = 422) -> RunRequestError:
    return RunRequestError(HTTPError(status, type_, message))


def _content(content: object, index: int) -> str:
    """A message's text: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        texts = [
            part.get("text")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(t for t in texts if isinstance(t, str))
    raise _invalid(
        "unsupported_content",
        f"messages[{index}].content must be text (a string or text parts)",
    )


def _messages(raw: object) -> tuple[dict[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("invalid_messages", "'messages' must be a non-empty list")
    out: list[dict[str, str]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _invalid("invalid_messages", f"messages[{i}] must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise _invalid(
                "invalid_messages", f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}"
            )
        out.append({"role": str(role), "content": _content(message.get("content"), i)})
    if out[-1]["role"] != "user":
        raise _invalid("invalid_messages", "the last message must be the user's (it is the task)")
    return tuple(out)


def _stream_options(data: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = data.get("stream") or False
    if not isinstance(stream, bool):
        raise _invalid("invalid_request", "'stream' must be true or false")
    options = data.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _invalid("invalid_request", "'stream_options' must be an object")
    include = options.get("include_usage") or False
    if not isinstance(include, bool):
        raise _invalid("invalid_request", "'stream_options.include_usage' must be a boolean")
    return stream, include


def _extension_budget(data: Mapping[str, Any]) -> ThinkingBudget | None:
    extension = data.get(EXTENSION)
    if extension is None:
        return None
    if not isinstance(extension, dict) or set(extension) - {"budget"}:
        raise _invalid("invalid_request", f"'{EXTENSION}' may only hold a 'budget' object")
    return parse_budget(extension.get("budget"))


def parse_chat_request(body: bytes, *, agents: Container[str], max_task_chars: int) -> ChatRequest:
    """Validate a chat completion request body (already size-checked).

    Unknown agent: 404 ``model_not_found``; tools or ``n`` above 1: 422
    ``unsupported_parameter``; other sampling options (``temperature``, ``max_tokens`` ...) are
    accepted and ignored (the agent chooses its model calls; limit a run with
    ``{"agenthood": {"budget": {...}}}``).
    """
    data = _load(body)
    if not isinstance(data, dict):
        raise _invalid("invalid_request", "the request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("invalid_request", "'model' (the agent's name) is required")
    messages = _messages(data.get("messages"))
    for name in _REFUSED:
        if data.get(name):
            raise _invalid(
                "unsupported_parameter", f"'{name}' is not supported: agents own their tools"
            )
    n = data.get("n")
    if n is not None and n != 1:
        raise _invalid("unsupported_parameter", "'n' must be 1 (one run answers one request)")
    stream, include_usage = _stream_options(data)
    budget = _extension_budget(data)
    task = check_task(messages[-1]["content"], max_task_chars)
    if model not in agents:  # after the body checks, as a run request's unknown agent is not
        raise _invalid("model_not_found", f"no agent called {model[:80]!r}", status=404)
    return ChatRequest(
        model=model,
        task=task,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        thinking_budget=budget,
    )


def openai_error(error: HTTPError) -> Response:
    """An error in OpenAI's shape, ``{"error": {"message", "type", "code", "param"}}``: ``type``
    and ``code`` are both the stable agenthood error type; status and headers are kept."""
    return Response(error_body(error), status_code=error.status, headers=_headers(error))


def error_body(error: HTTPError) -> bytes:
    """The OpenAI-shaped error object as JSON."""
    inner: dict[str, Any] = {
        "message": error.message,
        "type": error.type,
        "code": error.type,
        "param": None,
    }
    inner.update(error.extra)
    return _ENCODER.encode({"error": inner}).encode()


def _headers(error: HTTPError) -> dict[str, str]:
    headers = {"content-type": "application/json", "cache-control": "no-store"}
    headers.update(error.headers)
    return headers


def _usage(result: Mapping[str, Any]) -> dict[str, int]:
    cost = result["cost"]
    prompt, completion = int(cost["inputTokens"]), int(cost["outputTokens"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish(result: Mapping[str, Any]) -> str:
    """``stop`` for a completed run; ``length`` for one its budget or timeout cut short."""
    return "stop" if result["stopReason"] == COMPLETED else "length"


def _splice(head: Mapping[str, Any], result: Mapping[str, Any]) -> bytes:
    """``head`` as JSON with the exact run response added as its last field."""
    text = _ENCODER.encode(head).encode()
    return text[:-1] + b',"' + EXTENSION.encode() + b'":' + render_response(dict(result)) + b"}"


def completion_body(result: Mapping[str, Any], *, created: int | None = None) -> bytes:
    """A ``chat.completion`` object for a finished run."""
    head = {
        "id": f"chatcmpl-{result['runId']}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": result["agent"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["output"], "refusal": None},
                "logprobs": None,
                "finish_reason": _finish(result),
            }
        ],
        "usage": _usage(result),
        "system_fingerprint": None,
    }
    return _splice(head, result)


def models_body(names: list[str], *, created: int = 0) -> dict[str, Any]:
    """``GET /v1/models``: the agents as models."""
    return {"object": "list", "data": [model_body(name, created=created) for name in names]}


def model_body(name: str, *, created: int = 0) -> dict[str, Any]:
    """One agent as a ``model`` object."""
    return {"id": name, "object": "model", "created": created, "owned_by": "agenthood"}


class ChatStream:
    """Renders a run's events as OpenAI ``chat.completion.chunk`` events.

    The content is what the agent streams with ``RunContext.emit`` and, when the run ends, what
    its output adds after that (all of it for an agent that does not stream its answer). The
    final chunk carries ``finish_reason`` and the run response under ``agenthood``; with
    ``include_usage`` every chunk has ``"usage": null`` and a last chunk with no choices holds
    the usage. Errors are sent as ``data: {"error": {...}}`` (the SDK raises ``APIError``).
    """

    def __init__(self, model: str, *, include_usage: bool, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self.id = "chatcmpl-"
        self.sent = ""

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def __call__(self, event: str, data: object, number: int) -> bytes | None:
        del number
        if event == "start" and isinstance(data, dict):
            self.id = f"chatcmpl-{data['runId']}"
            return encode_data(self._chunk({"role": "assistant", "content": ""}))
        if event == "output" and isinstance(data, dict):
            text = str(data.get("text", ""))
            self.sent += text
            return encode_data(self._chunk({"content": text})) if text else None
        if event == "result" and isinstance(data, dict):
            return self._end(data)
        if event == "error" and isinstance(data, HTTPError):
            return b"data: " + error_body(data) + b"\n\n"
        return None

    def _end(self, result: Mapping[str, Any]) -> bytes:
        out: list[bytes] = []
        output = str(result["output"])
        if output.startswith(self.sent) and len(output) > len(self.sent):
            out.append(encode_data(self._chunk({"content": output[len(self.sent) :]})))
        final = _splice(self._chunk({}, _finish(result)), result)
        out.append(b"data: " + final + b"\n\n")
        if self.include_usage:
            usage = self._chunk({})
            usage["choices"] = []
            usage["usage"] = _usage(result)
            out.append(encode_data(usage))
        return b"".join(out)
