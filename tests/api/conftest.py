"""Fixtures of the agent-API tests.

``llm_server``: a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions format,
switchable while it runs: answer, fail with any status, hang past the client's timeout, return
garbage. ``refused_url``: an address where nothing listens.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class LLMServer:
    """State shared with the handler: ``mode`` is ``"ok"``, an int status, ``"hang"`` or
    ``"garbage"``; ``requests`` records every parsed request body. ``answer_model`` replaces the
    requested model name in answers (OpenAI answers ``gpt-4o-mini`` with a dated snapshot);
    ``stream_usage=False`` streams without the final usage event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode: str | int = "ok"
        self.hang_seconds = 2.0
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.prompt_tokens = 31
        self.completion_tokens = 9
        self.cached_tokens = 5
        self.answer_model: str | None = None
        self.stream_usage = True
        self.url = ""

    @property
    def hits(self) -> int:
        return len(self.requests)


def _handler(state: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            state.requests.append(body)
            state.auth_headers.append(self.headers.get("authorization"))
            if self.path != "/v1/chat/completions":
                self._send(404, b'{"error":{"message":"not found"}}')
                return
            mode = state.mode
            if mode == "hang":
                time.sleep(state.hang_seconds)
                mode = "ok"
            if isinstance(mode, int):
                self._send(mode, json.dumps({"error": {"message": f"status {mode}"}}).encode())
                return
            if mode == "garbage":
                self._send(200, b"<html>not json</html>", "text/html")
                return
            last = body["messages"][-1]["content"]
            text = f"{state.name} says: {last}"
            model = state.answer_model or body["model"]
            usage = {
                "prompt_tokens": state.prompt_tokens,
                "completion_tokens": state.completion_tokens,
                "total_tokens": state.prompt_tokens + state.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": state.cached_tokens},
            }
            if body.get("stream"):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for word in text.split(" "):
                    event = {
                        "model": model,
                        "choices": [{"index": 0, "delta": {"content": word + " "}}],
                    }
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                if state.stream_usage:
                    final: dict[str, Any] = {"model": model, "choices": [], "usage": usage}
                    self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True
                return
            answer = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            self._send(200, json.dumps(answer).encode())

    return Handler


@contextmanager
def _serve(name: str) -> Iterator[LLMServer]:
    """Start a chat-completions server on 127.0.0.1 (port 0) in a thread."""
    state = LLMServer(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def llm_server() -> Iterator[Callable[[str], LLMServer]]:
    """Factory: ``llm_server("primary")`` starts one server, stopped after the test."""
    with ExitStack() as stack:
        yield lambda name: stack.enter_context(_serve(name))


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"
