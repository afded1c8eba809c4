"""Streamed runs and the OpenAI-compatible surface under a real uvicorn, called by raw sockets,
httpx and the official ``openai`` package (sync, async, streamed and not)."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import free_port, served

from agenthood_mw import MemoryScope
from agenthood_mw.auth import SQLiteKeyStore, create_api_key, mint_token
from agenthood_mw.metering import ledger_from_url

openai = pytest.importorskip("openai")

SECRET = "stream-secret-" + "s" * 40
HERE = Path(__file__).parent
BUDGET = "0.003"  # dollars per user per day: about eight runs of the-developer


def jwt(user: str) -> str:
    return mint_token(secret=SECRET, user_id=user)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("stream")
    keys = tmp / "keys.db"
    store = SQLiteKeyStore(str(keys))
    alice_key = create_api_key(store, user_id="alice").secret
    store.close()
    ledger = f"sqlite:///{tmp / 'costs.db'}"
    env = {
        "AGENTHOOD_JWT_SECRET": SECRET,
        "STREAM_LEDGER": ledger,
        "STREAM_KEYS": str(keys),
        "STREAM_BUDGET": BUDGET,
        "PATH": "/usr/bin:/bin",
    }
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", "stream_server:make_app"),
        *("--app-dir", str(HERE), "--port", str(port), "--log-level", "warning"),
    ]
    root = HERE.parent.parent
    env["PYTHONPATH"] = str(root)
    with served(command, port=port, env=env, cwd=root, what="the streaming app") as (url, _p):
        yield {"url": url, "ledger": ledger, "alice_key": alice_key}


def run_trace(url: str, user: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        r = httpx.get(f"{url}/runs/{run_id}", headers={"authorization": f"Bearer {jwt(user)}"})
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return dict(r.json())
        time.sleep(0.1)


@pytest.mark.parametrize(("agent", "user"), [("chatty", "leaver"), ("sync-chatty", "quitter")])
def test_a_client_that_hangs_up_cancels_the_run_and_is_charged(
    server: dict[str, Any], agent: str, user: str
) -> None:
    url = server["url"]
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"task": "tell me everything"}).encode()
    request = (
        f"POST /agents/{agent}/run HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: Bearer {jwt(user)}\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        while received.count(b"event: output") < 3:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    # the socket is closed: the client hung up mid-stream, after 3 of 40 pieces
    head, _, stream = received.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0]
    assert b"text/event-stream" in head
    found = re.search(rb"event: start\ndata: (\{.*?\})\n", stream)  # chunked: match, not split
    assert found is not None, stream
    start = json.loads(found.group(1))
    trace = run_trace(url, user, start["runId"])
    assert trace["stopReason"] == "client_disconnected", trace
    time.sleep(0.5)  # had the run gone on, it would have taken more steps by now
    again = run_trace(url, user, start["runId"])
    assert again == trace
    steps = trace["totals"]["steps"]
    assert 3 <= steps < 40
    # what the run used before the hang-up is in the ledger, charged to the caller
    ledger = ledger_from_url(server["ledger"])
    try:
        spend = anyio_run(ledger.spend, MemoryScope.operator(user=user))
    finally:
        anyio_run(ledger.close)
    assert spend == Decimal(trace["totals"]["totalCost"]) > 0
    assert trace["totals"]["modelCalls"] == steps


def anyio_run(func: Any, *args: Any) -> Any:
    import anyio

    return anyio.run(func, *args)


def test_the_first_event_arrives_before_the_run_ends(server: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {jwt('watcher')}", "accept": "text/event-stream"}
    started = time.perf_counter()
    first = last = 0.0
    kinds: list[str] = []
    with httpx.stream(
        "POST",
        f"{server['url']}/agents/chatty/run",
        json={"task": "count", "budget": {"maxSteps": 10}},
        headers=headers,
        timeout=30,
    ) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
                first = first or time.perf_counter() - started
                last = time.perf_counter() - started
    assert kinds[0] == "start" and kinds[-1] == "result"
    assert kinds.count("step") == 10
    # streamed as it ran (10 pieces 50 ms apart), not buffered until the end
    assert last - first > 0.3, (first, last)


# -- the official openai package -----------------------------------------------------------


def sdk(server: dict[str, Any], api_key: str) -> Any:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=api_key, max_retries=0)


def async_sdk(server: dict[str, Any], api_key: str) -> Any:
    return openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=api_key, max_retries=0)


def ask(task: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": task}]


def test_sdk_sync_completion_has_usage_and_the_run(server: dict[str, Any]) -> None:
    client = sdk(server, jwt("sam"))
    completion = client.chat.completions.create(model="the-developer", messages=ask("fix a bug"))
    run = completion.model_extra["agenthood"]
    assert completion.object == "chat.completion"
    assert completion.model == "the-developer"
    assert completion.id == f"chatcmpl-{run['runId']}"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == run["output"]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == run["cost"]["inputTokens"] > 0
    assert completion.usage.completion_tokens == run["cost"]["outputTokens"] > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert run["memoryScope"] == "sam" and run["userId"] == "sam"
    assert run["stopReason"] == "completed"
    assert Decimal(str(run["cost"]["totalCost"])) > 0


def test_sdk_sync_stream_with_usage(server: dict[str, Any]) -> None:
    client = sdk(server, jwt("stella"))
    client.chat.completions.create(model="the-scribe", messages=ask("remember city: Oslo"))
    stream = client.chat.completions.create(
        model="the-reviewer",
        messages=ask("what went wrong?"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    run = finals[0].model_extra["agenthood"]
    assert content == run["output"]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # streamed
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == run["cost"]["inputTokens"]
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {f"chatcmpl-{run['runId']}"}


async def test_sdk_async_completion_and_stream(server: dict[str, Any]) -> None:
    client = async_sdk(server, jwt("avery"))
    completion = await client.chat.completions.create(
        model="the-scribe", messages=ask("remember pet: a cat")
    )
    assert completion.choices[0].message.content == "Noted: pet = a cat"
    stream = await client.chat.completions.create(
        model="the-scribe", messages=ask("what is pet?"), stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "From your notes: pet = a cat"
    await client.close()


def test_two_users_with_their_own_keys_see_only_their_own_memory(server: dict[str, Any]) -> None:
    alice = sdk(server, server["alice_key"])  # an agenthood API key
    bob = sdk(server, jwt("bob"))  # a JWT
    alice.chat.completions.create(model="the-scribe", messages=ask("remember colour: red"))
    bob.chat.completions.create(model="the-scribe", messages=ask("remember colour: teal"))
    seen_a = alice.chat.completions.create(model="the-scribe", messages=ask("list"))
    seen_b = bob.chat.completions.create(model="the-scribe", messages=ask("list"))
    assert "red" in seen_a.choices[0].message.content
    assert "teal" not in seen_a.choices[0].message.content
    assert "teal" in seen_b.choices[0].message.content
    assert "red" not in seen_b.choices[0].message.content
    assert seen_a.model_extra["agenthood"]["memoryScope"] == "alice"
    assert [m.id for m in alice.models.list()] == [
        "the-developer",
        "the-reviewer",
        "the-scribe",
        "chatty",
        "sync-chatty",
    ]


def test_the_26th_request_in_a_minute_is_a_rate_limit_error(server: dict[str, Any]) -> None:
    client = sdk(server, jwt("counter"))
    for _ in range(25):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as caught:
        client.models.list()
    assert caught.value.status_code == 429
    assert caught.value.type == "rate_limited"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_a_spent_budget_is_a_429_distinguishable_from_the_rate_limit(
    server: dict[str, Any],
) -> None:
    client = sdk(server, jwt("spender"))
    refused = None
    for _ in range(20):
        try:
            client.chat.completions.create(model="the-developer", messages=ask("refactor"))
        except openai.RateLimitError as exc:
            refused = exc
            break
    assert refused is not None, "the budget was never reached"
    assert refused.status_code == 429
    assert refused.type == "budget_exceeded" != "rate_limited"
    assert int(refused.response.headers["retry-after"]) >= 1


def test_sdk_errors_map_to_the_sdk_exceptions(server: dict[str, Any]) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "not-a-key").chat.completions.create(model="the-scribe", messages=ask("x"))
    client = sdk(server, jwt("erin"))
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=ask("x"))
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        client.chat.completions.create(
            model="the-scribe", messages=[{"role": "assistant", "content": "hi"}]
        )
    assert bad.value.code == "invalid_messages"
    assert client.models.retrieve("the-scribe").id == "the-scribe"
