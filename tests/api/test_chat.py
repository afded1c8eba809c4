"""The OpenAI-compatible surface in process: the messages -> task mapping, refusals in OpenAI's
error shape, budget stops, errors in a stream, the exact cost in the extension field."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agenthood_mw.api import RunContext

from .test_app import make_api, token
from .test_streaming import Crasher

openai = pytest.importorskip("openai")


class Echo:
    name = "echo"
    description = "shows what it was given"

    async def run(self, task: str, ctx: RunContext) -> str:
        ctx.step("echo")
        roles = ",".join(m["role"] for m in ctx.messages)
        return f"task={task} roles={roles} first={ctx.messages[0]['content']}"


def sdk(api: Any, user: str = "u1") -> Any:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")
    bearer = token(user)["authorization"].removeprefix("Bearer ")
    return openai.AsyncOpenAI(
        base_url="http://test/v1", api_key=bearer, http_client=http, max_retries=0
    )


async def test_the_task_is_the_last_user_message_and_the_agent_sees_the_conversation() -> None:
    api = make_api([Echo()])
    client = sdk(api)
    completion = await client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "second "},
                    {"type": "text", "text": "question"},
                ],
            },
        ],
    )
    await api.aclose()
    assert completion.choices[0].message.content == (
        "task=second question roles=system,user,assistant,user first=be brief"
    )


async def test_a_budget_stop_finishes_with_length_and_its_stop_reason() -> None:
    api = make_api()
    client = sdk(api)
    completion = await client.chat.completions.create(
        model="the-developer",
        messages=[{"role": "user", "content": "a big job"}],
        extra_body={"agenthood": {"budget": {"maxSteps": 2}}},
    )
    stream = await client.chat.completions.create(
        model="the-developer",
        messages=[{"role": "user", "content": "a big job"}],
        extra_body={"agenthood": {"budget": {"maxSteps": 2}}},
        stream=True,
    )
    chunks = [c async for c in stream]
    await api.aclose()
    assert completion.choices[0].finish_reason == "length"
    assert completion.model_extra["agenthood"]["stopReason"] == "budget_exhausted:steps"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].model_extra["agenthood"]["stopReason"] == "budget_exhausted:steps"


async def test_an_agent_failing_mid_stream_raises_in_the_sdk() -> None:
    api = make_api([Crasher()])
    client = sdk(api)
    stream = await client.chat.completions.create(
        model="crasher", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError, match="the agent failed"):
        async for _ in stream:
            pass
    with pytest.raises(openai.InternalServerError) as failed:
        await client.chat.completions.create(
            model="crasher", messages=[{"role": "user", "content": "x"}]
        )
    await api.aclose()
    assert failed.value.code == "agent_error"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, 422, "invalid_request"),
        ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model_not_found"),
        ({"model": "the-scribe", "messages": []}, 422, "invalid_messages"),
        (
            {"model": "the-scribe", "messages": [{"role": "bot", "content": "x"}]},
            422,
            "invalid_messages",
        ),
        (
            {"model": "the-scribe", "messages": [{"role": "user", "content": ""}]},
            422,
            "invalid_task",
        ),
        (
            {
                "model": "the-scribe",
                "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
            },
            422,
            "unsupported_content",
        ),
        (
            {"model": "the-scribe", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
            422,
            "unsupported_parameter",
        ),
        (
            {"model": "the-scribe", "messages": [{"role": "user", "content": "x"}], "n": 2},
            422,
            "unsupported_parameter",
        ),
        (
            {
                "model": "the-scribe",
                "messages": [{"role": "user", "content": "x"}],
                "stream": "yes",
            },
            422,
            "invalid_request",
        ),
        (
            {
                "model": "the-scribe",
                "messages": [{"role": "user", "content": "x"}],
                "agenthood": {"x": 1},
            },
            422,
            "invalid_request",
        ),
        (
            {
                "model": "the-scribe",
                "messages": [{"role": "user", "content": "x"}],
                "agenthood": {"budget": {"maxSteps": 0}},
            },
            422,
            "invalid_budget",
        ),
    ],
)
async def test_refusals_are_openai_shaped_json_before_anything_runs(
    body: dict[str, Any], status: int, code: str
) -> None:
    api = make_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        r = await c.post(
            "/v1/chat/completions",
            json={**body, "stream": body.get("stream", True)},
            headers=token("u1"),
        )
        await api.flush()
        report = await api.ledger.report("user")
        served = await c.post(
            "/v1/chat/completions",
            json={"model": "the-developer", "messages": [{"role": "user", "content": "x"}]},
            headers=token("u1"),
        )
        await api.flush()
        after = await api.ledger.report("user")
    await api.aclose()
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error == {"message": error["message"], "type": code, "code": code, "param": None}
    assert report == []  # nothing ran, nothing was charged
    assert served.status_code == 200 and len(after) == 1  # (the check above can fail)


async def test_unauthenticated_calls_get_401_in_openai_shape() -> None:
    api = make_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        models = await c.get("/v1/models")
        chat = await c.post(
            "/v1/chat/completions",
            json={"model": "the-scribe", "messages": [{"role": "user", "content": "x"}]},
        )
    await api.aclose()
    assert models.status_code == chat.status_code == 401
    assert "error" in models.json() and "error" in chat.json()


async def test_the_extension_field_carries_the_exact_decimal_cost() -> None:
    api = make_api()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "the-developer", "messages": [{"role": "user", "content": "go"}]},
            headers=token("u1"),
        )
        trace = await c.get(f"/runs/{r.headers['x-agenthood-run-id']}", headers=token("u1"))
    await api.aclose()
    # the meter attributes the run to the agent named by 'model' (per-agent budgets, reports)
    assert trace.json()["agent"] == "the-developer"
    body = json.loads(r.text, parse_float=Decimal)
    run = body["agenthood"]
    assert list(run) == [
        "agent",
        "userId",
        "output",
        "steps",
        "cost",
        "memoryScope",
        "runId",
        "stopReason",
    ]
    expected = (
        Decimal(run["cost"]["inputTokens"]) * Decimal("0.75")
        + Decimal(run["cost"]["outputTokens"]) * Decimal("2.00")
    ) / 1_000_000
    assert run["cost"]["totalCost"] == expected
    assert r.headers["x-agenthood-run-id"] == run["runId"]
    assert body["usage"] == {
        "prompt_tokens": run["cost"]["inputTokens"],
        "completion_tokens": run["cost"]["outputTokens"],
        "total_tokens": run["cost"]["inputTokens"] + run["cost"]["outputTokens"],
    }


async def test_the_sdk_reaches_a_mounted_api_under_its_prefix() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    api = make_api()
    outer = Starlette(routes=[Mount("/agenthood", app=api)])
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://test")
    bearer = token("u1")["authorization"].removeprefix("Bearer ")
    client = openai.AsyncOpenAI(
        base_url="http://test/agenthood/v1", api_key=bearer, http_client=http, max_retries=0
    )
    reply = await client.chat.completions.create(
        model="the-scribe", messages=[{"role": "user", "content": "remember tea: green"}]
    )
    models = [m.id async for m in client.models.list()]
    await api.aclose()
    assert reply.choices[0].message.content == "Noted: tea = green"
    assert reply.model_extra["agenthood"]["agent"] == "the-scribe"
    assert "the-scribe" in models
