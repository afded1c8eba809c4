"""Hostile input to the ``agenthood`` command (issue 11: #4, #9, #19 and #1's CLI siblings).

Every duration is bounded, a listing never dies on a stored value, what the server would always
refuse is refused with one ``error:`` line and exit status 2, and ``serve`` warns when the data
directory or the JWT secret file is open to other users.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from served import free_port

from agenthood_mw._cli._admin import token_lifetime_cap
from agenthood_mw._cli._demo import build_demo_app
from agenthood_mw._cli._serve import warn_loose_permissions
from agenthood_mw._cli._settings import load_settings
from agenthood_mw.cli import main

SECRET = "cli-hardening-secret-" + "k" * 40


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("AGENTHOOD_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "data"
    monkeypatch.setenv("AGENTHOOD_DATA_DIR", str(directory))
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", SECRET)
    return directory


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(result: tuple[int, str, str], *needles: str) -> None:
    code, out, err = result
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


HUGE = ["99999999999999999999w", "1" + "0" * 400, "1" + "0" * 400 + "d", "36526d", "1e9w"]


@pytest.mark.parametrize("value", HUGE)
def test_keys_create_refuses_an_unbounded_expiry(
    data_dir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    result = run_cli(capsys, "keys", "create", "--user", "u1", "--expires-in", value)
    assert_refused(result, "--expires-in")
    code, out, _ = run_cli(capsys, "keys", "list")
    assert code == 0 and out.strip() == "no API keys"


def test_keys_create_accepts_a_long_but_bounded_expiry(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "keys", "create", "--user", "u1", "--expires-in", "3651d")
    assert_refused(result, "--expires-in", "3650d")  # the key store's ten years
    code, _, _ = run_cli(capsys, "keys", "create", "--user", "u1", "--expires-in", "3650d")
    assert code == 0
    code, out, _ = run_cli(capsys, "keys", "list")
    assert code == 0
    year = time.gmtime(time.time() + 3650 * 86400).tm_year
    assert str(year) in out


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (6.048e25, "after 9999"),
        (1e300, "after 9999"),
        (float("inf"), "after 9999"),
        (-1e300, "unrepresentable"),
    ],
)
def test_keys_list_survives_an_absurd_stored_expiry(
    data_dir: Path, capsys: pytest.CaptureFixture[str], stored: float, shown: str
) -> None:
    """A key written by an older version with an absurd expiry is listed, never a traceback."""
    code, _, _ = run_cli(capsys, "keys", "create", "--user", "u1", "--name", "old")
    assert code == 0
    with sqlite3.connect(data_dir / "keys.db") as db:
        db.execute("UPDATE agenthood_api_keys SET expires_at = ?", (stored,))
    code, out, err = run_cli(capsys, "keys", "list")
    assert code == 0, err
    assert "Traceback" not in err
    line = next(ln for ln in out.splitlines() if " old " in ln)
    assert shown in line


def test_token_ttl_is_capped_at_the_servers_lifetime(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap = token_lifetime_cap()
    assert cap == 86400  # AuthMiddleware's max_token_lifetime default, which the demo keeps
    for value in ("25h", "2d", "86401", *HUGE):
        assert_refused(run_cli(capsys, "token", "--user", "u1", "--ttl", value), "--ttl")
    assert_refused(run_cli(capsys, "token", "--user", "u1", "--ttl", "250ms"), "--ttl")
    code, out, _ = run_cli(capsys, "token", "--user", "u1", "--ttl", "1d")
    assert code == 0
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"], audience="agenthood-api")
    assert claims["exp"] - claims["iat"] == 86400


async def test_a_token_at_the_cap_is_accepted_by_the_demo(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "token", "--user", "u1", "--ttl", "1d")
    assert code == 0
    api = build_demo_app(load_settings())
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        r = await client.post(
            "/agents/the-scribe/run",
            json={"task": "list"},
            headers={"authorization": f"Bearer {out.strip()}"},
        )
    assert r.status_code == 200, r.text
    await api.aclose()


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--tenant", "agenthood.anonymous", "reserved"),
        ("--user", " ", "--user"),
        ("--user", "", "--user"),
        ("--user", " u1", "--user"),
        ("--user", "u1 ", "--user"),
        ("--user", "u1\u3000", "--user"),
        ("--user", "u\tone", "--user"),
        ("--user", "u\u00a0one", "--user"),
        ("--tenant", "ac\u3000me", "--tenant"),
        ("--tenant", "\t", "--tenant"),
        ("--tenant", " acme", "--tenant"),
        ("--tenant", "acme\n", "--tenant"),
    ],
)
@pytest.mark.parametrize("command", [["token"], ["keys", "create"]])
def test_credentials_the_server_refuses_are_refused(
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    option: str,
    value: str,
    needle: str,
) -> None:
    argv = [*command, "--user", "u1", "--tenant", "acme"]
    argv[argv.index(option) + 1] = value
    assert_refused(run_cli(capsys, *argv), needle)
    code, out, _ = run_cli(capsys, "keys", "list")
    assert code == 0 and out.strip() == "no API keys"  # nothing was created


@pytest.mark.parametrize("value", HUGE)
def test_costs_since_is_bounded(
    data_dir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert_refused(run_cli(capsys, "costs", "--since", value), "--since")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--workers", "1" + "0" * 400], "--workers"),
        (["serve", "--workers", "513"], "--workers"),
        (["serve", "--port", "1" + "0" * 400], "--port"),
        (["serve", "--health-cache", "nan"], "--health-cache"),
        (["serve", "--health-cache", "-1"], "--health-cache"),
        (["serve", "--health-cache", "1e400"], "--health-cache"),
        (["serve", "--health-cache", "301"], "--health-cache"),
        (["serve", "agenthood_mw.cli:main", "--health-cache", "5"], "AgenthoodAPI(health_cache"),
    ],
)
def test_serve_refuses_out_of_range_numbers(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert_refused(run_cli(capsys, *argv), needle)


def test_health_cache_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTHOOD_HEALTH_CACHE", "lots")
    assert_refused(run_cli(capsys, "serve"), "AGENTHOOD_HEALTH_CACHE")
    monkeypatch.setenv("AGENTHOOD_HEALTH_CACHE", "999")
    assert_refused(run_cli(capsys, "serve"), "health_cache")
    monkeypatch.setenv("AGENTHOOD_HEALTH_CACHE", "2.5")
    assert load_settings().health_cache == 2.5


# -- #9: loose permissions on the data directory and the secret file ---------------------------
@pytest.mark.parametrize(
    ("dir_mode", "secret_mode", "named"),
    [
        (0o700, 0o600, []),
        (0o755, 0o600, ["data"]),
        (0o700, 0o644, ["jwt-secret"]),
        (0o770, 0o660, ["data", "jwt-secret"]),
        (0o701, 0o602, ["data", "jwt-secret"]),
    ],
)
def test_warn_loose_permissions(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    dir_mode: int,
    secret_mode: int,
    named: list[str],
) -> None:
    monkeypatch.delenv("AGENTHOOD_JWT_SECRET")
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text(SECRET + "\n")
    os.chmod(data_dir / "jwt-secret", secret_mode)
    os.chmod(data_dir, dir_mode)
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.cli"):
        warn_loose_permissions(load_settings())
    if not named:
        assert caplog.records == []
        return
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "\n" not in message and "chmod" in message
    assert f"{data_dir} (mode {dir_mode:04o})" in message or "data" not in named
    assert f"jwt-secret (mode {secret_mode:04o})" in message or "jwt-secret" not in named


def test_a_secret_from_the_environment_is_not_checked(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir(mode=0o700)
    (data_dir / "jwt-secret").write_text("stale\n")
    os.chmod(data_dir / "jwt-secret", 0o666)  # noqa: S103 - the case under test
    with caplog.at_level(logging.WARNING, logger="agenthood_mw.cli"):
        warn_loose_permissions(load_settings())
    assert caplog.records == []


@pytest.mark.slow
def test_serve_warns_at_start_about_a_world_readable_data_dir(tmp_path: Path) -> None:
    """The real command: one warning line in its output, then it serves."""
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)  # noqa: S103 - the case under test
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOOD_")}
    env["AGENTHOOD_DATA_DIR"] = str(data)
    port = free_port()
    command = [sys.executable, "-m", "agenthood_mw.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert process.poll() is None, "agenthood serve exited"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    warnings = [ln for ln in output.splitlines() if "readable or writable by other users" in ln]
    assert len(warnings) == 1, output
    assert f"{data} (mode 0755)" in warnings[0]
    assert "jwt-secret" not in warnings[0]  # generated 0600 by serve itself


# -- AGENTHOOD_PRICES: a hostile price file stops serve with one line --------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "not a usable JSON price file"),
        ('{"m": {"input": ' + "9" * 5000 + ', "output": 1}}', "above 1,000,000,000,000,000"),
        ('{"m": {"input": ' + "9" * 400 + ', "output": 1}}', "above 1,000,000,000,000,000"),
        ('{"m": {"input": 1e999999999, "output": 1}}', "above 1,000,000,000,000,000"),
        ('{"m": {"input": "1e999999999", "output": "1"}}', "m.input is '1e999999999', above"),
        ('{"m": {"input": -1e400, "output": 1}}', "above 1,000,000,000,000,000"),
        ('{"m": {"input": NaN, "output": 1}}', "finite"),
    ],
)
def test_a_hostile_price_file_stops_serve_with_one_line(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("AGENTHOOD_PRICES", str(path))
    result = run_cli(capsys, "serve", "--port", "0")
    assert_refused(result, "AGENTHOOD_PRICES: ", message)


@pytest.mark.parametrize(
    "argv",
    [
        ["trace", "r1", "--user", "u1"],
        ["costs"],
        ["costs", "--user", "u1"],
        ["export", "--user", "u1"],
        ["erase", "--user", "u1", "--yes"],
    ],
)
def test_a_missing_data_directory_is_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert not data_dir.exists()
    assert_refused(run_cli(capsys, *argv), "does not exist")
