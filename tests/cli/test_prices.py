"""``AGENTHOOD_PRICES``: the demo prices a remote OpenAI-compatible model from a JSON file.

A real OpenAI-compatible server on 127.0.0.1 answers the demo agents; with the price file the
run costs exactly what the file says, without it the tokens are metered at $0 with a warning.
A bad file stops ``agenthood serve`` with one line naming the variable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agenthood_mw._cli._demo import build_demo_app, demo_prices
from agenthood_mw._cli._settings import load_settings
from agenthood_mw._core.pricing import Usage
from agenthood_mw.api import DEMO_PRICES
from agenthood_mw.auth import mint_token
from agenthood_mw.cli import main

SECRET = "cli-prices-secret-" + "p" * 40
REMOTE_MODEL = "remote-chat-1"
PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 500
#: LiteLLM's layout: per-token prices as JSON numbers in exponent form, plus entries that are
#: not chat-model prices (skipped).
LITELLM = {
    "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0},
    REMOTE_MODEL: {
        "max_tokens": 16384,
        "input_cost_per_token": 1.5e-07,
        "output_cost_per_token": 6e-07,
        "cache_read_input_token_cost": 7.5e-08,
        "litellm_provider": "openai",
        "mode": "chat",
        "supports_function_calling": True,
    },
    "text-embedding-3-small": {
        "input_cost_per_token": 2e-08,
        "litellm_provider": "openai",
        "mode": "embedding",
    },
}
#: 1000 x 0.15 $/M + 500 x 0.60 $/M
CALL_COST = Decimal("0.00045")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "AGENTHOOD_MEMORY_URL",
        "AGENTHOOD_LEDGER_URL",
        "AGENTHOOD_RATE_LIMIT_STORAGE",
        "AGENTHOOD_PROVIDER_URL",
        "AGENTHOOD_PROVIDER_MODEL",
        "AGENTHOOD_PROVIDER_API_KEY",
        "AGENTHOOD_PRICES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    directory = tmp_path / "data"
    monkeypatch.setenv("AGENTHOOD_DATA_DIR", str(directory))
    return directory


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


class ChatServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (a thread)."""

    def __init__(self) -> None:
        self.hits = 0
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                state.hits += 1
                answer = {
                    "id": f"chatcmpl-{state.hits}",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "1. read\n2. fix"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": COMPLETION_TOKENS,
                        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                    },
                }
                data = json.dumps(answer).encode()
                status = 200 if self.path == "/v1/chat/completions" else 404
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def chat_server(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> Iterator[ChatServer]:
    server = ChatServer()
    monkeypatch.setenv("AGENTHOOD_PROVIDER_URL", server.url)
    monkeypatch.setenv("AGENTHOOD_PROVIDER_MODEL", REMOTE_MODEL)
    try:
        yield server
    finally:
        server.close()


def run_developer(user: str) -> dict[str, Any]:
    """One run of the-developer through the demo app built from the environment."""

    async def go() -> dict[str, Any]:
        app = build_demo_app(load_settings())
        token = mint_token(secret=SECRET, user_id=user)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post(
                    "/agents/the-developer/run",
                    json={"task": "fix the flaky test"},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
                body: dict[str, Any] = r.json()
                return body
        finally:
            await app.aclose()

    return asyncio.run(go())


def test_settings_read_the_price_file_path(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().prices_path is None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTHOOD_PRICES", "prices.json")
    assert load_settings().prices_path == tmp_path / "prices.json"  # resolved once, at start


@pytest.mark.parametrize(
    "entries",
    [LITELLM, {REMOTE_MODEL: {"input": "0.15", "output": "0.60", "cached_input": "0.075"}}],
    ids=["litellm-layout", "price-table-layout"],
)
def test_demo_prices_load_either_layout_exactly(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, Any]
) -> None:
    monkeypatch.setenv("AGENTHOOD_PRICES", str(write_json(tmp_path / "p.json", entries)))
    prices = demo_prices(load_settings())
    usage = Usage(input_tokens=PROMPT_TOKENS, output_tokens=COMPLETION_TOKENS)
    assert prices.cost_nanos(REMOTE_MODEL, usage) == 450_000  # $0.00045, no float rounding
    assert prices.cost_nanos("openai/" + REMOTE_MODEL, usage) == 450_000
    assert ("text-embedding-3-small" in prices) == ("text-embedding-3-small" in entries)  # #12
    offline = next(iter(DEMO_PRICES))
    assert offline in prices  # the demo's offline model keeps its price
    assert prices.unknown == "zero"


def test_the_price_file_overrides_the_demo_price(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = next(iter(DEMO_PRICES))
    path = write_json(tmp_path / "p.json", {offline: {"input": "1", "output": "1"}})
    monkeypatch.setenv("AGENTHOOD_PRICES", str(path))
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert demo_prices(load_settings()).cost_nanos(offline, usage) == 1_000_000_000


def test_remote_model_is_priced_from_the_file(
    chat_server: ChatServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AGENTHOOD_PRICES", str(write_json(tmp_path / "p.json", LITELLM)))
    with caplog.at_level(logging.WARNING, logger="agenthood_mw"):
        body = run_developer("usr_priced")
    assert chat_server.hits >= 1
    assert body["cost"]["inputTokens"] == PROMPT_TOKENS * chat_server.hits
    assert Decimal(str(body["cost"]["totalCost"])) == CALL_COST * chat_server.hits
    assert not [r for r in caplog.records if "no price" in r.getMessage()]


def test_without_a_price_file_the_remote_model_costs_zero_with_a_warning(
    chat_server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agenthood_mw"):
        body = run_developer("usr_unpriced")
    assert chat_server.hits >= 1
    assert body["cost"]["inputTokens"] == PROMPT_TOKENS * chat_server.hits  # still metered
    assert body["cost"]["totalCost"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(REMOTE_MODEL in w and "AGENTHOOD_PRICES" in w for w in warnings)


def test_a_file_without_the_remote_model_keeps_the_warning(
    chat_server: ChatServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_json(tmp_path / "p.json", {"other-model": {"input": "1", "output": "2"}})
    monkeypatch.setenv("AGENTHOOD_PRICES", str(path))
    with caplog.at_level(logging.WARNING, logger="agenthood_mw"):
        body = run_developer("usr_other")
    assert body["cost"]["totalCost"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(REMOTE_MODEL in w and str(path) in w for w in warnings)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"m": {"input": "1", "output": "2", "per": "token"}}', "unknown keys"),
        ('{"m": {"input": "cheap", "output": "2"}}', "input"),
        ('{"m": {"input": "-1", "output": "2"}}', "input"),
        ('{"m": "free"}', "mapping"),
        ('{"embed": {"input_cost_per_token": 1e-8, "mode": "embedding"}}', "prices no chat"),
        ("{}", "prices no chat"),
    ],
)
def test_a_bad_price_file_stops_serve_with_one_line(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("AGENTHOOD_PRICES", str(path))
    code = main(["serve", "--port", "0"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""  # refused before the banner, before binding a port
    assert err.startswith("error: AGENTHOOD_PRICES: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_banner_names_the_price_file(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agenthood_mw._cli._serve import _banner

    _banner(load_settings(), "127.0.0.1", 3000, False, 1)
    assert "prices:" not in capsys.readouterr().out
    path = write_json(tmp_path / "p.json", LITELLM)
    monkeypatch.setenv("AGENTHOOD_PRICES", str(path))
    _banner(load_settings(), "127.0.0.1", 3000, False, 1)
    assert f"prices:      {path} (AGENTHOOD_PRICES)" in capsys.readouterr().out
