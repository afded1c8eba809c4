"""``agenthood serve [APP]``: the demo service, or the user's ASGI app, under uvicorn."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Final

from agenthood_mw._cli._settings import ConfigError, load_settings, loose_permissions

__all__ = ["MAX_WORKERS", "memory_rate_limits", "serve", "warn_loose_permissions"]

_DEMO_FACTORY = "agenthood_mw._cli._demo:create_app"
#: Most worker processes ``--workers`` accepts.
MAX_WORKERS: Final = 512

logger = logging.getLogger("agenthood_mw.cli")


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "`agenthood serve` needs uvicorn: pip install 'agenthood-mw[serve]'"
        ) from None
    return uvicorn


def _load_app(target: str, *, factory: bool) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"APP must look like 'module:attribute', got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except (ValueError, TypeError) as exc:  # configuration errors raised while building the app
        raise ConfigError(f"invalid configuration in {module_name}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}") from None
    if factory:
        try:
            obj = obj()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid configuration in {target}: {exc}") from None
    if not callable(obj):
        raise ConfigError(f"{target} is not an ASGI application")
    return obj


def memory_rate_limits(app: Any) -> bool:
    """True when a Starlette app declares a ``RateLimitMiddleware`` on ``memory://``."""
    from agenthood_mw.ratelimit import RateLimitMiddleware

    for middleware in getattr(app, "user_middleware", ()):
        if getattr(middleware, "cls", None) is RateLimitMiddleware:
            storage = getattr(middleware, "kwargs", {}).get("storage", "memory://")
            if isinstance(storage, str) and storage.startswith("memory://"):
                return True
    return False


def _banner(settings: Any, host: str, port: int, generated: bool, workers: int) -> None:
    provider = (
        f"{settings.provider_model} at {settings.provider_url} (offline fallback)"
        if settings.provider_url
        else "offline (deterministic placeholder answers, not a language model)"
    )
    where = f"http://{host}:{port}"
    lines = [
        f"agenthood demo: {where}  (workers: {workers})",
        "  agents:      the-developer, the-reviewer, the-scribe",
        f"  data:        {settings.data_dir}  (memory, costs, traces, API keys)",
        f"  provider:    {provider}",
        f"  rate limit:  20/min per user, burst 5 ({settings.rate_limit_storage})",
    ]
    if settings.prices_path is not None:
        lines.append(f"  prices:      {settings.prices_path} (AGENTHOOD_PRICES)")
    if generated:
        lines.append(f"  JWT secret:  generated into {settings.secret_path}")
    elif settings.secret_from_env:
        lines.append("  JWT secret:  AGENTHOOD_JWT_SECRET")
    else:
        lines.append(f"  JWT secret:  {settings.secret_path}")
    lines += [
        "Call it:",
        "  JWT=$(agenthood token --user usr_8f3a)",
        f"  curl -X POST {where}/agents/the-developer/run \\",
        '    -H "Authorization: Bearer $JWT" -H "Content-Type: application/json" \\',
        '    -d \'{"task": "refactor the auth middleware to use async/await"}\'',
    ]
    print("\n".join(lines), flush=True)


def warn_loose_permissions(settings: Any) -> None:
    """One warning line when the data directory or the JWT secret file is open to other users
    (their memory, usage and keys, or the secret that signs every token)."""
    found = loose_permissions(settings)
    if not found:
        return
    listed = " and ".join(f"{path} (mode {mode:04o})" for path, mode in found)
    logger.warning(
        "agenthood serve: %s readable or writable by other users: run chmod 700 on the data "
        "directory and chmod 600 on the secret file",
        listed + (" is" if len(found) == 1 else " are"),
    )


def _check_options(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be 1..{MAX_WORKERS}, got {args.workers}")
    health_cache = getattr(args, "health_cache", None)
    if health_cache is None:
        return
    if args.app is not None:
        raise ConfigError(
            "--health-cache applies to the demo service; for your app pass "
            "AgenthoodAPI(health_cache=...)"
        )
    if not 0 <= health_cache <= 300:  # NaN fails too
        raise ConfigError(f"--health-cache must be 0..300 seconds, got {health_cache}")
    os.environ["AGENTHOOD_HEALTH_CACHE"] = repr(health_cache)  # every worker reads it


def serve(args: argparse.Namespace) -> int:
    """Run uvicorn; configuration problems raise :class:`ConfigError` (one line)."""
    uvicorn = _uvicorn()
    _check_options(args)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "proxy_headers": args.proxy_headers,
        "forwarded_allow_ips": args.forwarded_allow_ips,
    }
    if args.app is None:
        if args.data_dir:
            os.environ["AGENTHOOD_DATA_DIR"] = args.data_dir
        settings = load_settings()
        if args.workers > 1 and settings.rate_limit_storage.startswith("memory://"):
            raise ConfigError(
                f"--workers {args.workers} with memory:// rate limits would give every worker its "
                "own counters (the limit times the workers); set "
                "AGENTHOOD_RATE_LIMIT_STORAGE=redis://127.0.0.1:6379/0 or use --workers 1"
            )
        generated = not settings.secret_from_env and not settings.secret_path.exists()
        warn_loose_permissions(settings)
        from agenthood_mw._cli._demo import build_demo_app

        try:
            app = build_demo_app(settings)  # validates everything before binding the port
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(f"invalid demo configuration: {exc}") from None
        _banner(settings, args.host, args.port, generated, args.workers)
        if args.workers > 1:
            uvicorn.run(_DEMO_FACTORY, factory=True, workers=args.workers, **options)
        else:
            uvicorn.run(app, **options)
        return 0
    app = _load_app(args.app, factory=args.factory)
    if args.workers > 1 and memory_rate_limits(app):
        print(
            f"warning: {args.app} uses memory:// rate limits; with --workers {args.workers} each "
            "worker counts separately. Use storage='redis://...' (see docs/deployment.md).",
            file=sys.stderr,
            flush=True,
        )
    if args.workers > 1:
        uvicorn.run(args.app, factory=args.factory, workers=args.workers, **options)
    else:
        uvicorn.run(app, **options)
    return 0
