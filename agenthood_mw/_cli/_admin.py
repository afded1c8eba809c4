"""Operator commands: ``token``, ``keys``, ``costs``, ``trace``, ``erase``."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from agenthood_mw._cli._settings import AUDIENCE, ConfigError, Settings, load_settings
from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.scope import ANONYMOUS_TENANT, MemoryScope

_Store = TypeVar("_Store")

__all__ = [
    "costs",
    "erase",
    "export",
    "keys",
    "parse_since",
    "token",
    "token_lifetime_cap",
    "trace",
]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(data_dir=getattr(args, "data_dir", None))


def _duration(value: str, option: str, *, maximum: float | None = None) -> float:
    """A duration option (bounded: at most ``maximum``, never above 100 years)."""
    try:
        return parse_duration(value, option=option, maximum=maximum)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def _scope(args: argparse.Namespace) -> MemoryScope:
    try:
        return MemoryScope.operator(user=args.user, tenant=args.tenant)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--user/--tenant: {exc}") from None


def _open(factory: Callable[[str], _Store], url: str) -> _Store:
    """A store from its URL; a URL it refuses (a directory that does not exist, a bad
    scheme) is one ``error:`` line, not a traceback."""
    try:
        return factory(url)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(str(exc)) from None


def _check_id(value: str | None, option: str) -> None:
    """The server's subject rule for ids (``docs/auth.md``): not blank, no leading or trailing
    whitespace, no whitespace inside but the plain space."""
    if value is None:
        return
    if not value.strip() or value != value.strip():
        raise ConfigError(
            f"{option}: {value[:40]!r} is blank or has leading/trailing whitespace; the server "
            "refuses such ids"
        )
    if any(ch.isspace() and ch != " " for ch in value):
        raise ConfigError(
            f"{option}: {value[:40]!r} holds whitespace other than the plain space; the server "
            "refuses such ids"
        )


def _credential_scope(args: argparse.Namespace) -> MemoryScope:
    """The scope of a token or key about to be issued: refused here when the server would
    always refuse the credential (blank or padded ids, the reserved anonymous tenant)."""
    _check_id(args.user, "--user")
    _check_id(args.tenant, "--tenant")
    if args.tenant == ANONYMOUS_TENANT:
        raise ConfigError(
            f"--tenant: {ANONYMOUS_TENANT!r} is reserved for unauthenticated requests; no "
            "token or key can claim it"
        )
    return _scope(args)


#: Longest ``keys create --expires-in``: ten years, the API-key lifetime the key store accepts.
KEY_LIFETIME_CAP = 3650 * 86400.0


def token_lifetime_cap() -> float:
    """The longest token lifetime the demo's ``AuthMiddleware`` accepts: its
    ``max_token_lifetime`` default, which the demo does not change (1 day; read from the
    signature so the two cannot drift, the documented day if it cannot be read)."""
    from agenthood_mw.auth import AuthMiddleware

    try:
        default = inspect.signature(AuthMiddleware).parameters["max_token_lifetime"].default
        return parse_duration(default, option="max_token_lifetime")
    except (KeyError, TypeError, ValueError):
        return 86400.0


def parse_since(value: str | None, *, now: float | None = None) -> float | None:
    """``--since``: a duration back from now (``7d``, ``12h``) or an ISO date/time (UTC)."""
    if value is None:
        return None
    now = time.time() if now is None else now
    try:
        return now - parse_duration(value, option="--since")
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since: {value!r} is neither a duration (7d, 12h) nor a date (2026-11-01)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = [
        bool(rows) and all(_NUMERIC.match(r[i]) or not r[i] for r in rows)
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


_NUMERIC = re.compile(r"^\$?-?\d+(\.\d+)?$")


def _money(value: Decimal) -> str:
    """Exact dollars, never rounded (costs are integer nano-dollars)."""
    text = format(value.normalize(), "f") if value else "0"
    if "." not in text:
        text += ".00"
    return "$" + text


# -- token and keys --------------------------------------------------------------------------
def token(args: argparse.Namespace) -> int:
    """Print a development JWT accepted by the demo service (and any app sharing the secret)."""
    from agenthood_mw.auth import mint_token

    settings = _settings(args)
    ttl = _duration(args.ttl, "--ttl", maximum=token_lifetime_cap())
    if ttl < 1:
        raise ConfigError(
            f"--ttl: must be at least 1s (tokens count whole seconds), got {args.ttl!r}"
        )
    _credential_scope(args)  # what the server would refuse is refused here
    secret = settings.jwt_secret(create=False)
    print(
        mint_token(
            secret=secret,
            user_id=args.user,
            tenant=args.tenant,
            scopes=args.scopes or (),
            ttl=ttl,
            audience=AUDIENCE,
        )
    )
    return 0


def _key_store(settings: Settings) -> Any:
    from agenthood_mw.auth import SQLiteKeyStore

    settings.ensure_data_dir()
    return SQLiteKeyStore(settings.keys_path)


def _when(ts: float | None) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM`` UTC; one no calendar date can show (a key created
    with an absurd expiry by an older version) is rendered, never raised."""
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, ValueError, OSError, TypeError):
        return "after 9999" if isinstance(ts, int | float) and ts > 0 else "unrepresentable"


def keys(args: argparse.Namespace) -> int:
    """``keys create|list|revoke`` on the data directory's API-key store."""
    from agenthood_mw.auth import create_api_key

    store = _key_store(_settings(args))
    try:
        if args.keys_command == "create":
            _credential_scope(args)
            expires = (
                None
                if args.expires_in is None
                else _duration(args.expires_in, "--expires-in", maximum=KEY_LIFETIME_CAP)
            )
            try:
                created = create_api_key(
                    store,
                    user_id=args.user,
                    tenant=args.tenant,
                    scopes=args.scopes or (),
                    expires_in=expires,
                    name=args.name,
                )
            except (ValueError, TypeError) as exc:  # the key store's own checks, one line
                raise ConfigError(str(exc)) from None
            print(created.secret)
            print(
                f"key id {created.key_id} for {args.user}; the key above is shown only once",
                file=sys.stderr,
            )
            return 0
        if args.keys_command == "list":
            records = store.list(args.user)
            if not records:
                print("no API keys")
                return 0
            rows = [
                [
                    r.key_id,
                    r.user_id,
                    r.tenant or "-",
                    " ".join(sorted(r.scopes)) or "-",
                    r.name or "-",
                    _when(r.created_at),
                    _when(r.expires_at),
                    "revoked" if r.revoked_at is not None else "active",
                ]
                for r in records
            ]
            print(
                _table(
                    ["key id", "user", "tenant", "scopes", "name", "created", "expires", "state"],
                    rows,
                )
            )
            return 0
        if store.revoke(args.key_id):
            print(f"revoked {args.key_id}")
            return 0
        print(f"error: no active API key {args.key_id!r}", file=sys.stderr)
        return 1
    finally:
        store.close()


# -- costs, trace, erase ---------------------------------------------------------------------
async def _costs(args: argparse.Namespace, settings: Settings) -> str:
    from agenthood_mw.metering import ledger_from_url, trace_store_from_url

    since = parse_since(args.since)
    ledger = _open(ledger_from_url, args.ledger or settings.ledger_url)
    try:
        if args.user is None:
            per: Literal["user", "agent"] = "agent" if args.agent else "user"
            spends = await ledger.report(per, since=since)
            if args.agent:
                spends = [s for s in spends if s.subject == args.agent]
            rows = [
                [
                    s.subject if s.scope is None else s.scope.label,
                    str(s.calls),
                    str(s.input_tokens),
                    str(s.output_tokens),
                    _money(s.cost),
                ]
                for s in spends
            ]
            total = sum((s.cost for s in spends), Decimal(0))
            head = "agent" if per == "agent" else "user"
            rows.append(["TOTAL", str(sum(s.calls for s in spends)), "", "", _money(total)])
            return _table([head, "calls", "input tokens", "output tokens", "cost"], rows)
        scope = _scope(args)
        traces = _open(trace_store_from_url, args.traces or args.ledger or settings.ledger_url)
        try:
            spent = await ledger.spend(scope, since=since)
            runs = await traces.list(scope, limit=1000)
        finally:
            await traces.close()
    finally:
        await ledger.close()
    per_agent: dict[str, list[Any]] = {}
    for run in runs:
        agent = run.get("agent") or "-"
        if args.agent and agent != args.agent:
            continue
        if since is not None and float(run.get("startedAt") or 0) < since:
            continue
        totals = run.get("totals") or {}
        row = per_agent.setdefault(agent, [0, 0, 0, Decimal(0)])
        row[0] += 1
        row[1] += int(totals.get("inputTokens") or 0)
        row[2] += int(totals.get("outputTokens") or 0)
        row[3] += Decimal(str(totals.get("totalCost") or "0"))
    rows = [
        [agent, str(r[0]), str(r[1]), str(r[2]), _money(r[3])]
        for agent, r in sorted(per_agent.items(), key=lambda kv: kv[1][3], reverse=True)
    ]
    label = scope.label
    table = (
        _table(["agent", "runs", "input tokens", "output tokens", "cost"], rows)
        if rows
        else (
            "no runs in the trace store for this user"
            + (f" and agent {args.agent}" if args.agent else "")
        )
    )
    return f"user {label}: total spend {_money(spent)} (ledger)\n{table}"


def costs(args: argparse.Namespace) -> int:
    """Print spend per user (default), per agent (``--agent``) or one user's (``--user``)."""
    print(asyncio.run(_costs(args, _settings(args))))
    return 0


async def _trace(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    from agenthood_mw.metering import trace_store_from_url

    traces = _open(trace_store_from_url, args.traces or settings.ledger_url)
    try:
        return await traces.get(_scope(args), args.run_id)
    finally:
        await traces.close()


def trace(args: argparse.Namespace) -> int:
    """Print the trace of one run of ``--user`` as JSON."""
    found = asyncio.run(_trace(args, _settings(args)))
    if found is None:
        print(f"error: no run {args.run_id!r} for user {args.user!r}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2, default=str))
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from agenthood_mw.memory import memory_from_url
    from agenthood_mw.metering import ledger_from_url, trace_store_from_url

    scope = _scope(args)
    backend = _open(memory_from_url, args.memory or settings.memory_url)
    try:
        memory = (await backend.export(scope)).to_dict()
    finally:
        await backend.close()
    traces = _open(trace_store_from_url, args.traces or args.ledger or settings.ledger_url)
    try:
        runs = await traces.list(scope, limit=1000)
    finally:
        await traces.close()
    ledger = _open(ledger_from_url, args.ledger or settings.ledger_url)
    try:
        spent = await ledger.spend(scope)
    finally:
        await ledger.close()
    return {"memory": memory, "runs": runs, "totalSpend": str(spent)}


def export(args: argparse.Namespace) -> int:
    """Print everything stored about one user as JSON (data-protection access request):
    memory (facts, project documents, episodic events), run traces (within their retention)
    and the total spend."""
    data = asyncio.run(_export(args, _settings(args)))
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    return 0


async def _erase(
    scope: MemoryScope, args: argparse.Namespace, settings: Settings
) -> dict[str, int]:
    from agenthood_mw.memory import memory_from_url
    from agenthood_mw.metering import ledger_from_url, trace_store_from_url

    counts: dict[str, int] = {}
    backend = _open(memory_from_url, args.memory or settings.memory_url)
    try:
        counts["memory items"] = await backend.erase(scope)
    finally:
        await backend.close()
    traces = _open(trace_store_from_url, args.traces or args.ledger or settings.ledger_url)
    try:
        counts["traces"] = await traces.erase(scope)
    finally:
        await traces.close()
    ledger = _open(ledger_from_url, args.ledger or settings.ledger_url)
    try:
        counts["usage records"] = await ledger.erase(scope)
    finally:
        await ledger.close()
    return counts


def erase(args: argparse.Namespace) -> int:
    """Delete everything stored about one user (data-protection request), after confirmation."""
    scope = _scope(args)
    settings = _settings(args)
    who = scope.label
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("erase needs confirmation: re-run with --yes (no terminal to ask)")
        answer = input(
            f"Permanently delete the memory, traces, usage records and API keys of {who!r}? "
            "Type the user id to confirm: "
        )
        if answer.strip() != args.user:
            print("aborted: nothing was deleted", file=sys.stderr)
            return 1
    counts = asyncio.run(_erase(scope, args, settings))
    revoked = 0
    if settings.keys_path.exists():
        store = _key_store(settings)
        try:
            for record in store.list(args.user):
                if record.tenant == args.tenant and record.revoked_at is None:
                    revoked += bool(store.revoke(record.key_id))
        finally:
            store.close()
    counts["API keys revoked"] = revoked
    print(f"erased {who}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    return 0
