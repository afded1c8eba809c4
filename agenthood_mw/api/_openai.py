"""An OpenAI-compatible chat-completions provider over httpx (extra ``[serve]``).

Works against OpenAI and any server speaking ``POST {base_url}/chat/completions``: vLLM,
Ollama (``http://127.0.0.1:11434/v1``), a LiteLLM proxy, llama.cpp server...
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from agenthood_mw._core.failover import FailureKind
from agenthood_mw.api._offline import estimate_prompt_tokens, estimate_tokens
from agenthood_mw.api._provider import (
    ChatMessage,
    Completion,
    ProviderError,
    Usage,
    bound_meter,
    check_priced,
    record_usage,
    validate_messages,
)

if TYPE_CHECKING:
    import httpx

    from agenthood_mw.metering import Meter

__all__ = ["OpenAICompatibleProvider"]

logger = logging.getLogger("agenthood_mw.api")


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "OpenAICompatibleProvider needs httpx; install agenthood-mw[serve]"
        ) from exc
    return httpx


#: Most tokens one response may report; above it the usage report is malformed (a huge integer
#: would overflow the ledger's 64-bit columns later).
MAX_REPORTED_TOKENS: Final = 10**12


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return 0
    if value > MAX_REPORTED_TOKENS:
        raise ValueError(f"a token count above {MAX_REPORTED_TOKENS}")
    return value


def _usage(data: Mapping[str, Any]) -> Usage:
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        usage = {}
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else 0
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, Mapping) else 0
    )
    return Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        cached_input_tokens=_int(cached),
        reasoning_tokens=_int(reasoning),
    )


class OpenAICompatibleProvider:
    """Chat completions from an OpenAI-compatible HTTP endpoint.

    Args:
        model: the default model (``"gpt-4o-mini"``, ``"llama3.1"`` ...).
        base_url: the API root including ``/v1`` (default OpenAI's).
        api_key: sent as ``Authorization: Bearer``; ``None`` sends no credential (local servers).
        name: the provider's name in traces, costs and failover attempts.
        timeout: seconds for the whole request (connect + read).
        headers: extra request headers (``OpenAI-Organization`` ...).

    Usage of every completion is recorded on the current request's meter, priced by the
    requested model when the server answers under another name (a dated snapshot). A model the
    meter's price table cannot price is refused before the request is sent. Failures raise
    :class:`~agenthood_mw.api.ProviderError` classified for failover.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        name: str = "openai",
        timeout: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError("model: a non-empty model name is required")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url: must be an http:// or https:// URL")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key: must be a non-empty str or None")
        if not isinstance(name, str) or not name:
            raise ValueError("name: must be a non-empty str")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError("timeout: must be a number of seconds")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError("timeout: must be a positive number of seconds")
        _import_httpx()
        self.name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._headers = {"accept": "application/json", **dict(headers or {})}
        if api_key is not None:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, base_url={self.base_url!r})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            httpx_mod = _import_httpx()
            self._client = httpx_mod.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self.timeout
            )
        return self._client

    def _payload(
        self,
        messages: Sequence[ChatMessage],
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model or self.model,
            "messages": validate_messages(messages),
        }
        if max_tokens is not None:
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                raise ValueError("max_tokens must be a positive int")
            payload["max_tokens"] = max_tokens
        if temperature is not None:
            payload["temperature"] = float(temperature)
        return payload

    def _error(self, kind: FailureKind, message: str, status: int | None = None) -> ProviderError:
        return ProviderError(
            f"provider {self.name!r}: {message}", provider=self.name, kind=kind, status=status
        )

    async def _post(self, payload: dict[str, Any]) -> Any:
        httpx_mod = _import_httpx()
        try:
            response = await self._http().post("/chat/completions", json=payload)
        except httpx_mod.TimeoutException as exc:
            raise self._error(FailureKind.TIMEOUT, f"timed out ({type(exc).__name__})") from exc
        except httpx_mod.TransportError as exc:
            raise self._error(
                FailureKind.CONNECTION, f"connection failed ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 400:
            raise self._error(
                FailureKind.HTTP, f"HTTP {response.status_code}", status=response.status_code
            )
        return response

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """One chat completion; usage is recorded on the current meter."""
        payload = self._payload(messages, model, max_tokens, temperature)
        check_priced(payload["model"], self.name)
        response = await self._post(payload)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            usage = _usage(data)
        except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
            raise self._error(FailureKind.PROTOCOL, "malformed chat-completions response") from exc
        answered_model = data.get("model")
        completion = Completion(
            text=text,
            usage=usage,
            model=answered_model if isinstance(answered_model, str) else payload["model"],
            provider=self.name,
            finish_reason=choice.get("finish_reason"),
            requested_model=payload["model"],
        )
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
        """Stream the answer's text (server-sent events).

        Usage is recorded on the meter that was current when the stream started, when the
        stream ends in any way after the server accepted the request: normally, or because the
        consumer stopped early (``break``, ``aclose()``, cancellation, an error). It is the
        server's report (``stream_options.include_usage``) when it arrived, else an estimate
        (~4 characters per token) of the prompt and of the text received so far. A refused
        request (HTTP error, connection failure before an answer) is not charged.
        """
        httpx_mod = _import_httpx()
        payload = self._payload(messages, model, max_tokens, temperature)
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
        meter = bound_meter()
        check_priced(payload["model"], self.name, meter)
        usage: Usage | None = None
        received: list[str] = []
        answered_model = payload["model"]
        accepted = finished = False
        try:
            async with self._http().stream("POST", "/chat/completions", json=payload) as response:
                if response.status_code >= 400:
                    raise self._error(
                        FailureKind.HTTP,
                        f"HTTP {response.status_code}",
                        status=response.status_code,
                    )
                accepted = True
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        event = json.loads(data)
                        if isinstance(event, dict) and isinstance(event.get("usage"), Mapping):
                            usage = _usage(event)
                    except (ValueError, RecursionError) as exc:
                        raise self._error(FailureKind.PROTOCOL, "malformed stream event") from exc
                    if not isinstance(event, dict):
                        raise self._error(FailureKind.PROTOCOL, "malformed stream event")
                    if isinstance(event.get("model"), str):
                        answered_model = event["model"]
                    for choice in event.get("choices") or ():
                        delta = (choice.get("delta") or {}).get("content")
                        if isinstance(delta, str) and delta:
                            received.append(delta)
                            yield delta
            finished = True
        except httpx_mod.TimeoutException as exc:
            raise self._error(FailureKind.TIMEOUT, f"timed out ({type(exc).__name__})") from exc
        except httpx_mod.TransportError as exc:
            raise self._error(
                FailureKind.CONNECTION, f"connection failed ({type(exc).__name__})"
            ) from exc
        finally:
            if accepted:
                self._record_stream(
                    meter, payload, answered_model, usage, "".join(received), finished
                )

    def _record_stream(
        self,
        meter: Meter | None,
        payload: dict[str, Any],
        answered_model: str,
        usage: Usage | None,
        text: str,
        finished: bool,
    ) -> None:
        from agenthood_mw.metering import BudgetExhausted

        if meter is None:  # the stream started outside a metered request
            return
        if usage is None:
            usage = Usage(estimate_prompt_tokens(payload["messages"]), estimate_tokens(text))
            logger.log(
                logging.WARNING if finished else logging.INFO,
                "stream of provider %r %s without a usage report: metered an estimate of %d "
                "input + %d output tokens",
                self.name,
                "ended" if finished else "was stopped",
                usage.input_tokens,
                usage.output_tokens,
            )
        completion = Completion(
            text,
            usage,
            answered_model,
            self.name,
            "stop" if finished else None,
            requested_model=payload["model"],
        )
        # BudgetExhausted: the run is already finished, the meter logged the late usage
        with contextlib.suppress(BudgetExhausted):
            record_usage(completion, meter=meter)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
