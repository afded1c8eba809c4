"""Alert sinks (a real local HTTP server plays the webhook peer) and OpenTelemetry export."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw.metering import (
    CostMeterMiddleware,
    SpikeAlert,
    SpikeRule,
    WebhookAlertSink,
    current_meter,
)


class Receiver:
    """A real HTTP server on 127.0.0.1:0 collecting POSTed JSON bodies."""

    def __init__(self, delay: float = 0.0) -> None:
        received: list[dict[str, Any]] = []
        self.received = received
        self.arrived = threading.Event()

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(delay)
                received.append({"body": json.loads(body), "auth": self.headers["authorization"]})
                self.send_response(204)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def spend_app(amount: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        meter = current_meter()
        meter.step("think")
        meter.record(
            model="gpt-4o", input_tokens=1, output_tokens=1, cost=amount, provider="openai"
        )
        meter.tool_call("search", arguments={"q": 1}, error="timeout")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_webhook_sink_posts_off_the_request_path(prices: Any, with_identity: Any) -> None:
    receiver = Receiver(delay=0.5)  # a slow peer must not slow requests down
    sink = WebhookAlertSink(receiver.url, timeout=5, headers={"authorization": "Bearer hook"})
    mw = CostMeterMiddleware(
        spend_app("6.00"),
        prices=prices,
        on_alert=sink,
        spike_rule=SpikeRule(new_subject_threshold="10.00"),
    )
    transport = httpx.ASGITransport(app=with_identity(mw))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            t0 = time.perf_counter()
            for _ in range(3):  # 6, 12 (alert), 18 (already alerted today)
                assert (await client.get("/", headers={"x-test-user": "big"})).status_code == 200
            elapsed = time.perf_counter() - t0
        assert elapsed < 0.5  # the POST (0.5 s) happened on the sink's own thread
        assert receiver.arrived.wait(5)
        sink.close()
        assert len(receiver.received) == 1
        got = receiver.received[0]
        assert got["auth"] == "Bearer hook"
        assert got["body"]["type"] == "cost_spike"
        assert (got["body"]["subject"], got["body"]["today"]) == ("big", "12")
        assert got["body"]["rule"] == "new_subject"
    finally:
        receiver.close()


def test_webhook_failures_are_counted_not_raised() -> None:
    sink = WebhookAlertSink("http://127.0.0.1:9/unreachable", timeout=0.5)
    alert = SpikeAlert("user", "u", MemoryScope.operator(user="u"), "2026-01-01",
                       Decimal(20), Decimal(0), Decimal(10), "new_subject", 0)  # fmt: skip
    sink(alert)
    sink.close()
    assert (sink.sent, sink.failed) == (0, 1)
    with pytest.raises(ValueError, match="url"):
        WebhookAlertSink("ftp://example.org")


class RecordingSpan:
    def __init__(self, name: str, context: Any, start_time: int, attributes: dict[str, Any]):
        self.name = name
        self.parent = context
        self.start_time = start_time
        self.attributes = dict(attributes)
        self.end_time: int | None = None
        self.status: Any = None

    def end(self, end_time: int | None = None) -> None:
        self.end_time = end_time

    def set_status(self, status: Any) -> None:
        self.status = status

    def get_span_context(self) -> Any:
        from opentelemetry.trace import INVALID_SPAN_CONTEXT

        return INVALID_SPAN_CONTEXT

    def is_recording(self) -> bool:
        return True


class RecordingTracer:
    """Implements the part of the opentelemetry-api Tracer interface the exporter uses."""

    def __init__(self) -> None:
        self.spans: list[RecordingSpan] = []

    def start_span(
        self, name: str, context: Any = None, *, start_time: int, attributes: Any
    ) -> Any:
        span = RecordingSpan(name, context, start_time, attributes)
        self.spans.append(span)
        return span


async def test_opentelemetry_export_uses_gen_ai_attributes(prices: Any, with_identity: Any) -> None:

    tracer = RecordingTracer()
    mw = CostMeterMiddleware(spend_app("0.01"), prices=prices, on_alert=None, opentelemetry=tracer)
    transport = httpx.ASGITransport(app=with_identity(mw))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/agents/the-developer/run", headers={"x-test-user": "o"})
    parent, chat, tool = tracer.spans
    assert parent.name == "invoke_agent the-developer"
    assert parent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert parent.attributes["gen_ai.agent.name"] == "the-developer"
    assert parent.attributes["agenthood.run_id"] == r.headers["x-agenthood-run-id"]
    assert parent.attributes["agenthood.cost"] == "0.01"
    assert chat.name == "chat gpt-4o"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o"
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 1
    assert list(chat.parent.values()) == [parent]  # the child was started in the parent context
    assert tool.attributes["gen_ai.tool.name"] == "search" and tool.status is not None
    assert parent.start_time <= chat.start_time <= parent.end_time  # type: ignore[operator]
    # With the global (no-op unless configured) tracer nothing breaks.
    mw2 = CostMeterMiddleware(spend_app("0.01"), prices=prices, on_alert=None, opentelemetry=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=with_identity(mw2)), base_url="http://t"
    ) as client:
        assert (await client.get("/", headers={"x-test-user": "o"})).status_code == 200
    with pytest.raises(TypeError, match="opentelemetry"):
        CostMeterMiddleware(spend_app("0"), prices=prices, opentelemetry="yes")
