"""The ``agenthood`` command in-process: token, keys, costs, trace, erase, serve validation."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import httpx
import jwt
import pytest

from agenthood_mw import MemoryScope
from agenthood_mw._cli._admin import parse_since
from agenthood_mw._cli._demo import build_demo_app
from agenthood_mw._cli._serve import memory_rate_limits
from agenthood_mw._cli._settings import load_settings
from agenthood_mw.cli import main
from agenthood_mw.memory import memory_from_url

SECRET = "cli-test-secret-" + "s" * 40


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "AGENTHOOD_JWT_SECRET",
        "AGENTHOOD_MEMORY_URL",
        "AGENTHOOD_LEDGER_URL",
        "AGENTHOOD_RATE_LIMIT_STORAGE",
        "AGENTHOOD_PROVIDER_URL",
        "AGENTHOOD_PROVIDER_MODEL",
        "AGENTHOOD_PRICES",
    ):
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "data"
    monkeypatch.setenv("AGENTHOOD_DATA_DIR", str(directory))
    return directory


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_token_is_accepted_with_the_configured_secret(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    code, out, _ = run_cli(
        capsys, "token", "--user", "usr_8f3a", "--scopes", "agents:run", "--ttl", "15m"
    )
    assert code == 0
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"], audience="agenthood-api")
    assert claims["sub"] == "usr_8f3a"
    assert claims["scope"] == "agents:run"
    assert claims["exp"] - claims["iat"] == 900


def test_token_errors_are_one_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "token", "--user", "u1")
    assert code == 2 and out == ""
    assert err.startswith("error: no JWT secret") and err.count("\n") == 1
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", "short")
    code, _, err = run_cli(capsys, "token", "--user", "u1")
    assert code == 2 and "shorter than 32 bytes" in err
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    code, _, err = run_cli(capsys, "token", "--user", "u1", "--ttl", "soon")
    assert code == 2 and err.startswith("error: --ttl")
    code, _, err = run_cli(capsys, "token", "--user", "bad\x00user")
    assert code == 2 and "--user" in err


def test_generated_secret_is_shared_by_serve_and_token(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    secret = settings.jwt_secret(create=True)
    assert (data_dir / "jwt-secret").stat().st_mode & 0o777 == 0o600
    assert settings.jwt_secret(create=True) == secret  # stable
    code, out, _ = run_cli(capsys, "token", "--user", "u1")
    assert code == 0
    assert jwt.decode(out.strip(), secret, algorithms=["HS256"], audience="agenthood-api")


def test_keys_create_list_revoke(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    code, out, err = run_cli(
        capsys, "keys", "create", "--user", "usr_k", "--name", "ci", "--expires-in", "30d"
    )
    assert code == 0
    secret = out.strip()
    assert secret.startswith("ah_") and "shown only once" in err
    key_id = secret.split("_")[1]
    code, out, _ = run_cli(capsys, "keys", "list")
    assert key_id in out and "usr_k" in out and "active" in out and secret not in out

    async def call() -> int:
        app = build_demo_app(load_settings())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post(
                "/agents/the-scribe/run",
                json={"task": "list"},
                headers={"authorization": f"Bearer {secret}"},
            )
        await app.aclose()
        return r.status_code

    assert asyncio.run(call()) == 200
    code, out, _ = run_cli(capsys, "keys", "revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    assert asyncio.run(call()) == 401
    code, _, err = run_cli(capsys, "keys", "revoke", "000000000000")
    assert code == 1 and "no active API key" in err


def _seed_runs(users: list[str]) -> dict[str, str]:
    """Run the developer once per user through the demo app; return run ids."""
    from agenthood_mw.auth import mint_token

    async def go() -> dict[str, str]:
        app = build_demo_app(load_settings())
        transport = httpx.ASGITransport(app=app)
        run_ids = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for user in users:
                token = mint_token(secret=SECRET, user_id=user)
                headers = {"authorization": f"Bearer {token}"}
                await c.post(
                    "/agents/the-scribe/run",
                    json={"task": f"remember owner: {user}"},
                    headers=headers,
                )
                r = await c.post(
                    "/agents/the-developer/run", json={"task": "fix bug"}, headers=headers
                )
                assert r.status_code == 200
                run_ids[user] = r.json()["runId"]
        await app.aclose()
        return run_ids

    return asyncio.run(go())


def test_costs_trace_and_erase(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    run_ids = _seed_runs(["usr_a", "usr_b"])
    code, out, _ = run_cli(capsys, "costs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["user", "calls"]
    assert any(line.startswith("usr_a ") for line in lines)
    assert any(line.startswith("usr_b ") for line in lines)
    assert lines[-1].startswith("TOTAL")
    code, out, _ = run_cli(capsys, "costs", "--agent", "the-developer", "--since", "1h")
    assert "the-developer" in out and "usr_a" not in out
    code, out, _ = run_cli(capsys, "costs", "--user", "usr_a")
    assert out.startswith("user usr_a: total spend $0.")
    assert "the-developer" in out and "the-scribe" in out
    code, out, _ = run_cli(capsys, "costs", "--since", "2999-01-01")
    assert "usr_a" not in out

    code, out, _ = run_cli(capsys, "trace", run_ids["usr_a"], "--user", "usr_a")
    assert code == 0 and f'"runId": "{run_ids["usr_a"]}"' in out
    code, out, err = run_cli(capsys, "trace", run_ids["usr_a"], "--user", "usr_b")
    assert code == 1 and out == "" and "no run" in err

    code, out, _ = run_cli(capsys, "export", "--user", "usr_a")
    exported_data = json.loads(out)
    assert code == 0
    assert [f["key"] for f in exported_data["memory"]["facts"]] == ["owner"]
    assert exported_data["memory"]["facts"][0]["value"]["value"] == "usr_a"
    assert {r["runId"] for r in exported_data["runs"]} >= {run_ids["usr_a"]}
    assert all(r["memoryScope"] == "usr_a" for r in exported_data["runs"])
    assert exported_data["totalSpend"].startswith("0.")
    assert "usr_b" not in out

    # erase asks for the user id; a wrong answer deletes nothing
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "usr_b")
    code, _, err = run_cli(capsys, "erase", "--user", "usr_a")
    assert code == 1 and "aborted" in err
    monkeypatch.setattr("builtins.input", lambda prompt: "usr_a")
    code, out, _ = run_cli(capsys, "erase", "--user", "usr_a")
    assert code == 0 and out.startswith("erased usr_a:")

    async def exported(user: str) -> int:
        backend = memory_from_url(load_settings().memory_url)
        try:
            return len(await backend.export(MemoryScope.operator(user=user)))
        finally:
            await backend.close()

    assert asyncio.run(exported("usr_a")) == 0
    assert asyncio.run(exported("usr_b")) > 0
    code, out, _ = run_cli(capsys, "costs")
    assert "usr_a" not in out and "usr_b" in out
    code, _, _ = run_cli(capsys, "trace", run_ids["usr_a"], "--user", "usr_a")
    assert code == 1


def test_erase_without_terminal_needs_yes(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = run_cli(capsys, "erase", "--user", "usr_a")
    assert code == 2 and "--yes" in err


def test_serve_refuses_memory_limits_with_several_workers(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "serve", "--workers", "4")
    assert code == 2 and out == ""
    assert "memory://" in err and "redis://" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "not-an-app"], "module:attribute"),
        (["serve", "agenthood_no_such_module:app"], "cannot import"),
        (["serve", "agenthood_mw.cli:no_such_attr"], "has no attribute"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--workers", "0"], "--workers"),
    ],
)
def test_serve_configuration_errors_are_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_serve_reports_a_broken_user_app(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = tmp_path / "broken_app_for_cli.py"
    module.write_text(
        textwrap.dedent(
            """
            from agenthood_mw.ratelimit import RateLimiter
            limiter = RateLimiter(window="1m", max=0)
            app = None
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_cli(capsys, "serve", "broken_app_for_cli:app")
    assert code == 2
    assert err.startswith("error: invalid configuration in broken_app_for_cli:")
    assert "max" in err and err.count("\n") == 1


def test_weak_secret_stops_serve(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", "tooshort")
    code, _, err = run_cli(capsys, "serve")
    assert code == 2 and "AGENTHOOD_JWT_SECRET" in err


def test_memory_rate_limit_detection() -> None:
    from starlette.applications import Starlette

    from agenthood_mw.ratelimit import RateLimitMiddleware

    app = Starlette()
    assert not memory_rate_limits(app)
    app.add_middleware(RateLimitMiddleware, window="1m", max=5, storage="memory://")
    assert memory_rate_limits(app)
    shared = Starlette()
    shared.add_middleware(RateLimitMiddleware, window="1m", max=5, storage="redis://h:6379/0")
    assert not memory_rate_limits(shared)


def test_parse_since() -> None:
    assert parse_since("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_since("2026-11-01") == 1_793_491_200.0
    assert parse_since(None) is None
    with pytest.raises(Exception, match="--since"):
        parse_since("last tuesday")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 0
    for command in ("serve", "token", "keys", "costs", "trace", "export", "erase"):
        assert command in out
