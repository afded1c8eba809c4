"""A local fake LLM provider: OpenAI chat completions / responses / embeddings and Anthropic
messages, JSON and SSE, on 127.0.0.1 (uvicorn in a thread).

Usage is derived from the request: ``max_tokens`` (or ``max_output_tokens``, default 5) output
tokens, one SSE content chunk each. Behaviour per request, by header ``x-fake``:
``429`` / ``500`` (always fail), ``fail-first`` (fail with 500 the first time a given
``x-fake-key`` is seen), ``nousage``, ``badusage`` (chat streams: a count written as a
string), ``cut`` (close the connection mid-stream), ``stall``
(0.2 s between chunks). Header ``x-fake-gzip`` gzips the JSON answers. Every request (retries
included) is counted in :attr:`Provider.log`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from served import free_port
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass
class Hit:
    path: str
    user: str | None
    status: int
    usage: dict[str, int] | None  # in OUR convention: input counts every prompt token


@dataclass
class Provider:
    url: str = ""
    log: list[Hit] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hits(self, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [h for h in self.log if path is None or h.path.endswith(path)]


def _sse(events: list[Any], mode: str) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i, event in enumerate(events):
            if mode == "cut" and i == len(events) // 2:
                raise RuntimeError("fake provider: stream cut")
            if mode == "stall":
                await asyncio.sleep(0.2)
            if isinstance(event, str):
                yield f"data: {event}\n\n".encode()
            else:
                yield f"event: {event.get('type', 'chunk')}\ndata: {json.dumps(event)}\n\n".encode()

    return gen()


def _openai_usage(body: dict[str, Any], responses: bool) -> tuple[dict[str, Any], dict[str, int]]:
    out = int(body.get("max_output_tokens" if responses else "max_tokens") or 5)
    inp, cached, reasoning = 100 + out, 30, out // 2
    ours = {"input": inp, "output": out, "cached": cached, "reasoning": reasoning, "write": 0}
    if responses:
        wire = {
            "input_tokens": inp,
            "output_tokens": out,
            "total_tokens": inp + out,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }
    else:
        wire = {
            "prompt_tokens": inp,
            "completion_tokens": out,
            "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    return wire, ours


def _chat(body: dict[str, Any], mode: str) -> tuple[Response, dict[str, int] | None]:
    wire, ours = _openai_usage(body, responses=False)
    model, out = body["model"], ours["output"]
    if not body.get("stream"):
        msg = {"role": "assistant", "content": "x " * out}
        payload: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
        }
        if mode != "nousage":
            payload["usage"] = wire
        if isinstance(body.get("service_tier"), str):  # the tier asked for is the tier billed
            payload["service_tier"] = body["service_tier"]
        return JSONResponse(payload), None if mode == "nousage" else ours
    include = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    if isinstance(body.get("service_tier"), str):
        base["service_tier"] = body["service_tier"]
    events: list[Any] = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": "x "}, "finish_reason": None}],
            "usage": None,
        }
        for _ in range(out)
    ]
    reported = include and mode not in ("nousage", "cut", "badusage")
    if mode == "badusage":  # a compatible server writing counts as strings
        wire = {**wire, "prompt_tokens": str(wire["prompt_tokens"])}
    if include and mode != "nousage":
        events.append({**base, "choices": [], "usage": wire})
    events.append("[DONE]")
    return StreamingResponse(_sse(events, mode), media_type="text/event-stream"), (
        ours if reported else None
    )


def _responses(body: dict[str, Any], mode: str) -> tuple[Response, dict[str, int] | None]:
    wire, ours = _openai_usage(body, responses=True)
    model, out = body["model"], ours["output"]
    response: dict[str, Any] = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": model,
        "status": "completed",
        "output": [],
        "usage": None if mode == "nousage" else wire,
    }
    if not body.get("stream"):
        return JSONResponse(response), None if mode == "nousage" else ours
    events: list[Any] = [
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {**response, "usage": None, "status": "in_progress"},
        }
    ]
    events += [
        {
            "type": "response.output_text.delta",
            "sequence_number": i + 1,
            "item_id": "m",
            "output_index": 0,
            "content_index": 0,
            "delta": "x ",
            "logprobs": [],
        }
        for i in range(out)
    ]
    events.append({"type": "response.completed", "sequence_number": out + 1, "response": response})
    reported = mode not in ("nousage", "cut")
    return StreamingResponse(_sse(events, mode), media_type="text/event-stream"), (
        ours if reported else None
    )


def _embeddings(body: dict[str, Any], mode: str) -> tuple[Response, dict[str, int] | None]:
    inp = 7 * (len(body["input"]) if isinstance(body["input"], list) else 1)
    payload: dict[str, Any] = {
        "object": "list",
        "model": body["model"],
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
    }
    if mode != "nousage":
        payload["usage"] = {"prompt_tokens": inp, "total_tokens": inp}
    ours = {"input": inp, "output": 0, "cached": 0, "reasoning": 0, "write": 0}
    return JSONResponse(payload), None if mode == "nousage" else ours


def _messages(body: dict[str, Any], mode: str) -> tuple[Response, dict[str, int] | None]:
    out = int(body.get("max_tokens") or 5)
    base_in, read, write = 50, 20, 10
    ours = {
        "input": base_in + read + write,
        "output": out,
        "cached": read,
        "reasoning": 0,
        "write": write,
    }
    start_usage: dict[str, Any] = {
        "input_tokens": base_in,
        "output_tokens": 1,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }
    if '"ttl": "1h"' in json.dumps(body):  # a 1-hour cache breakpoint: the writes are 1h ones
        start_usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0,
            "ephemeral_1h_input_tokens": write,
        }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if not body.get("stream"):
        full = {
            **message,
            "content": [{"type": "text", "text": "x " * out}],
            "stop_reason": "end_turn",
        }
        if mode != "nousage":
            full["usage"] = {**start_usage, "output_tokens": out}
        return JSONResponse(full), None if mode == "nousage" else ours
    events: list[Any] = [{"type": "message_start", "message": {**message, "usage": start_usage}}]
    events.append(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x "}}
        for _ in range(out)
    ]
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": out},
        }
    )
    events.append({"type": "message_stop"})
    return StreamingResponse(_sse(events, mode), media_type="text/event-stream"), (
        None if mode == "cut" else ours
    )


HANDLERS = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/embeddings": _embeddings,
    "/v1/messages": _messages,
}


def build_app(provider: Provider) -> ASGIApp:
    async def endpoint(request: Request) -> Response:
        body = await request.json()
        mode = request.headers.get("x-fake", "")
        user = request.headers.get("x-user")
        path = request.url.path
        status = 0
        if mode in ("429", "500"):
            status = int(mode)
        elif mode == "fail-first":
            key = request.headers["x-fake-key"]
            with provider.lock:
                first = key not in provider.seen
                provider.seen.add(key)
            status = 500 if first else 0
        if status:
            with provider.lock:
                provider.log.append(Hit(path, user, status, None))
            error = {"error": {"type": "server_error", "message": "fake failure"}}
            return JSONResponse(error, status_code=status, headers={"retry-after-ms": "1"})
        response, usage = HANDLERS[path](body, mode)
        with provider.lock:
            provider.log.append(Hit(path, user, 200, usage))
        return response

    async def health(request: Request) -> Response:
        return Response("ok")

    routes = [Route(p, endpoint, methods=["POST"]) for p in HANDLERS]
    plain = Starlette(routes=[*routes, Route("/health", health)])
    gzipped = GZipMiddleware(plain, minimum_size=1)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # ``x-fake-gzip``: compress the JSON answers (as api.openai.com does).
        wanted = scope["type"] == "http" and b"x-fake-gzip" in dict(scope["headers"])
        await (gzipped if wanted else plain)(scope, receive, send)

    return app


@contextmanager
def running_provider() -> Iterator[Provider]:
    """Serve a fresh :class:`Provider` on a free port in a thread; stop it afterwards."""
    provider = Provider()
    port = free_port()
    config = uvicorn.Config(
        build_app(provider), host="127.0.0.1", port=port, log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake provider did not start")
        time.sleep(0.01)
    provider.url = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(10)
