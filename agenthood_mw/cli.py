"""The ``agenthood`` command: serve the agent API and operate it.

``agenthood serve [APP]``, ``agenthood token``, ``agenthood keys create|list|revoke``,
``agenthood costs``, ``agenthood trace RUN_ID``, ``agenthood export --user ID``,
``agenthood erase --user ID``. Configuration
problems end with one ``error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from agenthood_mw._version import __version__

__all__ = ["build_parser", "main"]

_DATA_DIR_HELP = "data directory of the demo stores (default $AGENTHOOD_DATA_DIR or ./.agenthood)"


def _user_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--user", required=required, help="user id (the JWT 'sub')")
    parser.add_argument("--tenant", default=None, help="tenant id, when users have one")


def _store_options(parser: argparse.ArgumentParser, *, memory: bool = False) -> None:
    parser.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    parser.add_argument("--ledger", default=None, help="ledger URL (default: the data dir's)")
    parser.add_argument("--traces", default=None, help="trace store URL (default: the ledger's)")
    if memory:
        parser.add_argument("--memory", default=None, help="memory URL (default: the data dir's)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="agenthood",
        description="Serve and operate an agenthood-mw agent service.",
    )
    parser.add_argument("--version", action="version", version=f"agenthood {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the demo agents (no APP) or your ASGI app 'module:attr'",
        description="Serve the demo agent API (no APP) or your ASGI application with uvicorn.",
    )
    serve.add_argument("app", nargs="?", metavar="APP", help="your app as 'module:attribute'")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--factory", action="store_true", help="APP is a factory to call")
    serve.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    serve.add_argument(
        "--health-cache",
        type=float,
        default=None,
        metavar="SECONDS",
        help="demo: seconds a GET /health result is reused, 0-300 (default 1, or "
        "$AGENTHOOD_HEALTH_CACHE)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    serve.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (default on)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies whose X-Forwarded-* headers are trusted (default 127.0.0.1)",
    )

    token = commands.add_parser("token", help="mint a development JWT for the demo's secret")
    _user_options(token)
    token.add_argument("--scopes", nargs="*", default=[], help="granted scopes")
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 15m, 1h, 1d (default 1h)")
    token.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)

    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    keys.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="create a key (printed once)")
    _user_options(create)
    create.add_argument("--scopes", nargs="*", default=[], help="granted scopes")
    create.add_argument("--name", default="", help="a label")
    create.add_argument("--expires-in", default=None, help="e.g. 90d (default: never)")
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user", default=None, help="only this user's keys")
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id", metavar="KEY_ID")
    for action in (create, listing, revoke):
        # also accepted after the action, like every other subcommand's --data-dir (SUPPRESS:
        # an absent option must not reset a --data-dir given before the action)
        action.add_argument("--data-dir", default=argparse.SUPPRESS, help=_DATA_DIR_HELP)

    costs = commands.add_parser("costs", help="print spend per user, per agent or for one user")
    costs.add_argument("--user", default=None, help="one user's spend, per agent")
    costs.add_argument("--tenant", default=None, help="the user's tenant")
    costs.add_argument("--agent", default=None, help="only this agent")
    costs.add_argument("--since", default=None, help="7d, 12h or a date such as 2026-11-01")
    _store_options(costs)

    trace = commands.add_parser("trace", help="print one run's trace (steps, calls, cost)")
    trace.add_argument("run_id", metavar="RUN_ID")
    _user_options(trace)
    _store_options(trace)

    export = commands.add_parser(
        "export", help="print everything stored about a user as JSON (data-protection request)"
    )
    _user_options(export)
    _store_options(export, memory=True)

    erase = commands.add_parser(
        "erase", help="delete a user's memory, traces, usage and keys (data-protection request)"
    )
    _user_options(erase)
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _store_options(erase, memory=True)
    return parser


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    if command == "serve":
        from agenthood_mw._cli._serve import serve

        return serve
    from agenthood_mw._cli import _admin

    handler: Callable[[argparse.Namespace], int] = getattr(_admin, command)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agenthood`` console script."""
    from agenthood_mw._cli._settings import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _handler(args.command)(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
