"""Where the demo service and the operator commands find their stores and their JWT secret.

Everything is read from the environment (so every ``uvicorn`` worker process sees the same
configuration) with embedded defaults under one data directory (``./.agenthood``):

=============================== ===========================================================
``AGENTHOOD_DATA_DIR``          the data directory (default ``./.agenthood``)
``AGENTHOOD_JWT_SECRET``        HS256 secret; default: generated once into ``<dir>/jwt-secret``
``AGENTHOOD_MEMORY_URL``        memory backend (default ``sqlite:///<dir>/memory.db``)
``AGENTHOOD_LEDGER_URL``        cost ledger and traces (default ``sqlite:///<dir>/costs.db``)
``AGENTHOOD_RATE_LIMIT_STORAGE`` rate-limit storage (default ``memory://``)
``AGENTHOOD_PROVIDER_URL``      an OpenAI-compatible endpoint (default: the offline provider)
``AGENTHOOD_PROVIDER_MODEL``    its model; ``AGENTHOOD_PROVIDER_API_KEY`` its key
``AGENTHOOD_PRICES``            a JSON price file that prices the remote model (LiteLLM's
                                ``model_prices_and_context_window.json`` layout, or
                                ``{"model": {"input": "0.15", "output": "0.60"}}`` in dollars
                                per million tokens); without it the remote model costs $0
``AGENTHOOD_HEALTH_CACHE``      seconds a ``GET /health`` result is reused (default 1; 0-300)
=============================== ===========================================================
"""

from __future__ import annotations

import math
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["MIN_SECRET_BYTES", "ConfigError", "Settings", "load_settings", "loose_permissions"]

MIN_SECRET_BYTES: Final = 32
AUDIENCE: Final = "agenthood-api"
SECRET_FILE: Final = "jwt-secret"  # noqa: S105 - a file name, not a secret


class ConfigError(Exception):
    """A configuration problem, reported by the CLI as one line (no traceback)."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    memory_url: str
    ledger_url: str
    rate_limit_storage: str
    provider_url: str | None
    provider_model: str | None
    provider_api_key: str | None
    secret_from_env: bool
    prices_path: Path | None = None
    health_cache: float = 1.0

    @property
    def secret_path(self) -> Path:
        return self.data_dir / SECRET_FILE

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.db"

    def jwt_secret(self, *, create: bool) -> str:
        """The HS256 secret: the environment's, else the data directory's (created on demand
        with mode 0600 when ``create``)."""
        env = os.environ.get("AGENTHOOD_JWT_SECRET")
        if env is not None:
            if len(env.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"AGENTHOOD_JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes; use e.g. "
                    "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
            return env
        path = self.secret_path
        if path.exists():
            value = path.read_text(encoding="utf-8").strip()
            if len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes")
            return value
        if not create:
            raise ConfigError(
                "no JWT secret: set AGENTHOOD_JWT_SECRET, or start `agenthood serve` once "
                f"(it generates {path})"
            )
        self.ensure_data_dir()
        value = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its secret
            return self.jwt_secret(create=False)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        return value

    def ensure_data_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {self.data_dir}: {exc}") from None


def _sqlite_url(path: Path) -> str:
    return "sqlite:///" + str(path)  # absolute path -> sqlite:////abs/path


def _health_cache(text: str | None) -> float:
    """``AGENTHOOD_HEALTH_CACHE`` (seconds; the API checks the range)."""
    if text is None or not text.strip():
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"AGENTHOOD_HEALTH_CACHE: {text[:40]!r} is not a number of seconds")
    return value


def loose_permissions(settings: Settings) -> list[tuple[Path, int]]:
    """The data directory and the JWT secret file when other users may read or write them
    (any group or world permission bit), with their modes."""
    paths = [settings.data_dir]
    if not settings.secret_from_env:
        paths.append(settings.secret_path)
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:  # not there (yet): created private
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found


def load_settings(env: Mapping[str, str] | None = None, *, data_dir: str | None = None) -> Settings:
    """Settings from ``env`` (default ``os.environ``); ``data_dir`` overrides the variable."""
    env = os.environ if env is None else env
    raw_dir = data_dir or env.get("AGENTHOOD_DATA_DIR") or ".agenthood"
    directory = Path(raw_dir).expanduser().resolve()
    provider_url = env.get("AGENTHOOD_PROVIDER_URL") or None
    provider_model = env.get("AGENTHOOD_PROVIDER_MODEL") or None
    prices = env.get("AGENTHOOD_PRICES") or None
    if provider_url and not provider_model:
        raise ConfigError("AGENTHOOD_PROVIDER_URL is set but AGENTHOOD_PROVIDER_MODEL is not")
    return Settings(
        health_cache=_health_cache(env.get("AGENTHOOD_HEALTH_CACHE")),
        data_dir=directory,
        memory_url=env.get("AGENTHOOD_MEMORY_URL") or _sqlite_url(directory / "memory.db"),
        ledger_url=env.get("AGENTHOOD_LEDGER_URL") or _sqlite_url(directory / "costs.db"),
        rate_limit_storage=env.get("AGENTHOOD_RATE_LIMIT_STORAGE") or "memory://",
        provider_url=provider_url,
        provider_model=provider_model,
        provider_api_key=env.get("AGENTHOOD_PROVIDER_API_KEY") or None,
        secret_from_env="AGENTHOOD_JWT_SECRET" in env,
        prices_path=Path(prices).expanduser().resolve() if prices else None,
    )
