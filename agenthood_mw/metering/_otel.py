"""Optional OpenTelemetry export of finished runs with the ``gen_ai.*`` semantic conventions.

Only ``opentelemetry-api`` is used (no SDK dependency): spans go to whatever tracer provider
the application configured. One ``invoke_agent`` span per run, a ``chat {model}`` child per
model call and an ``execute_tool {name}`` child per tool call, back-dated to their timestamps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agenthood_mw.metering._records import RunRecord

__all__ = ["make_exporter"]


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


def make_exporter(option: object) -> Callable[[RunRecord], None] | None:
    """``False``/``None``: no export; ``True``: the global tracer; or a ``Tracer`` object."""
    if option is None or option is False:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode
    except ImportError as exc:
        raise ImportError(
            "opentelemetry=True needs the opentelemetry-api package (pip install opentelemetry-api)"
        ) from exc
    if option is True:
        tracer: Any = trace.get_tracer("agenthood_mw.metering")
    elif hasattr(option, "start_span"):
        tracer = option
    else:
        raise TypeError("opentelemetry: expected True, False or an opentelemetry Tracer")

    def export(run: RunRecord) -> None:
        agent = run.agent or "agent"
        t = run.totals
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": run.run_id,
            "gen_ai.usage.input_tokens": t.input_tokens,
            "gen_ai.usage.output_tokens": t.output_tokens,
            "agenthood.run_id": run.run_id,
            "agenthood.cost": t.cost_text,
        }
        if run.stop_reason:
            attrs["agenthood.stop_reason"] = run.stop_reason
        if run.status is not None:
            attrs["http.response.status_code"] = run.status
        parent = tracer.start_span(
            f"invoke_agent {agent}", start_time=_ns(run.started_at), attributes=attrs
        )
        ctx = trace.set_span_in_context(parent)
        for ev in run.event_dicts():
            kind = ev.get("type")
            if kind == "model_call":
                span = tracer.start_span(
                    f"chat {ev['model']}",
                    context=ctx,
                    start_time=_ns(ev["ts"]),
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": ev["model"],
                        "gen_ai.provider.name": ev.get("provider") or "unknown",
                        "gen_ai.usage.input_tokens": ev["inputTokens"],
                        "gen_ai.usage.output_tokens": ev["outputTokens"],
                        "agenthood.cost": ev["cost"],
                    },
                )
                span.end(end_time=_ns(ev["ts"]))
            elif kind == "tool_call":
                span = tracer.start_span(
                    f"execute_tool {ev['name']}",
                    context=ctx,
                    start_time=_ns(ev["ts"]),
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": ev["name"],
                    },
                )
                if ev.get("error"):
                    span.set_status(Status(StatusCode.ERROR, str(ev["error"])[:200]))
                span.end(end_time=_ns(ev["ts"]))
        if run.error:
            parent.set_status(Status(StatusCode.ERROR, run.error[:200]))
        parent.end(end_time=_ns(run.ended_at))

    return export
