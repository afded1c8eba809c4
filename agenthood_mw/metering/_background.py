"""Metering outside requests (queue workers, cron jobs, scripts) and across threads.

Outside a request nothing is charged unless a meter is opened explicitly: :func:`run` /
:func:`arun` (context managers) and :func:`metered` (a decorator) open a :class:`Meter` for an
:class:`~agenthood_mw.Identity` or an operator :class:`~agenthood_mw.MemoryScope` through the
same :meth:`Metering.begin` / :meth:`Metering.end` calls the middleware shells make, so the
run gets the same ledger, budgets, token rate and traces as a request. They are reached as
``metering.run(...)``, ``metering.arun(...)`` and ``metering.metered(...)``.

:func:`bind` carries the current meter (and every other context variable) into a function run
by a ``concurrent.futures`` thread pool, which does not copy the caller's context.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from agenthood_mw._core.scope import MemoryScope
from agenthood_mw._errors import HTTPError
from agenthood_mw._identity import Identity
from agenthood_mw.metering._meter import BudgetExhausted, Meter, reset_meter, set_meter

__all__ = ["arun", "bind", "metered", "run"]

P = ParamSpec("P")
R = TypeVar("R")

#: ``BudgetExhausted.reason`` of a run refused by the token rate (``tokens_per_minute``).
TOKEN_RATE_EXCEEDED = "token_rate_exceeded"  # noqa: S105 - a reason, not a secret


class Metering(Protocol):
    """What a metered run needs of :class:`~agenthood_mw.metering.Metering`."""

    def scope_for(self, identity: object) -> MemoryScope | None: ...

    def agent_for(self, name: object) -> str | None: ...

    def begin(
        self, identity: object, path: str | None, agent: object, *, scope: MemoryScope | None = None
    ) -> Meter | HTTPError: ...

    async def begin_async(
        self, identity: object, path: str | None, agent: object, *, scope: MemoryScope | None = None
    ) -> Meter | HTTPError: ...

    def end(self, meter: Meter, status: int | None) -> Any: ...

    async def end_async(self, meter: Meter, status: int | None) -> Any: ...


def bind(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` running in a copy of the caller's context, wherever it is called.

    ``ThreadPoolExecutor.submit`` / ``map`` and ``loop.run_in_executor`` do not copy context
    variables into their worker threads, so ``current_meter()`` (and ``current_identity()``)
    would fail there or, worse, be missed. ``pool.submit(bind(fn), ...)`` fixes that. Each call
    runs in its own copy (a bound function may run in several threads at once).
    ``asyncio`` tasks, ``asyncio.to_thread`` and ``anyio.to_thread.run_sync`` copy the context
    themselves and need no help.
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return bound


def _scope_of(metering: Metering, who: object) -> MemoryScope:
    if isinstance(who, MemoryScope):
        return who
    if isinstance(who, Identity):
        if not who.is_authenticated:
            raise ValueError("identity: an unauthenticated Identity cannot be metered")
        scope = metering.scope_for(who)
        if scope is None:
            raise PermissionError(f"identity: the tenant {who.tenant!r} is reserved")
        return scope
    raise TypeError(
        "identity: expected an Identity or a MemoryScope (MemoryScope.operator(user=...)), "
        f"got {type(who).__name__}"
    )


def _agent_of(metering: Metering, agent: object) -> str | None:
    if agent is None:
        return None
    name = metering.agent_for(agent)
    if name is None:
        raise ValueError(f"agent: {agent!r} is not a non-empty name declared in agents=")
    return name


def _refused(error: HTTPError) -> Exception:
    """The exception of a run refused at admission (what a request would get as a 4xx)."""
    retry_text = dict(error.headers).get("retry-after")
    retry = None if retry_text is None else float(retry_text)
    if error.type == "budget_exceeded":
        return BudgetExhausted("budget_exhausted:budget", retry_after=retry)
    if error.type == "token_rate_exceeded":
        return BudgetExhausted(TOKEN_RATE_EXCEEDED, retry_after=retry)
    return PermissionError(error.message)  # pragma: no cover - scopes are checked first


@contextmanager
def run(
    metering: Metering, identity: Identity | MemoryScope, *, agent: str | None = None
) -> Iterator[Meter]:
    """Open a :class:`Meter` for ``identity`` (an authenticated ``Identity`` or an operator
    ``MemoryScope``) and ``agent``, bound as ``current_meter()`` inside the block.

    Admission is that of a request: a spent hard budget or an empty token bucket raises
    :class:`BudgetExhausted` before the block runs (reason ``"budget_exhausted:budget"`` or
    ``"token_rate_exceeded"``, with ``retry_after``). At exit the run is settled and handed to
    the ledger and the trace store; an exception leaving the block is recorded as the run's
    error (what was used is still charged) and propagates. Blocking when a store does I/O:
    in a coroutine use :func:`arun`.
    """
    scope = _scope_of(metering, identity)
    name = _agent_of(metering, agent)
    meter = metering.begin(None, None, name, scope=scope)
    if isinstance(meter, HTTPError):
        raise _refused(meter)
    token = set_meter(meter)
    try:
        yield meter
    except BaseException as exc:
        meter.record_error(exc)
        raise
    finally:
        reset_meter(token)
        metering.end(meter, None)


@asynccontextmanager
async def arun(
    metering: Metering, identity: Identity | MemoryScope, *, agent: str | None = None
) -> AsyncIterator[Meter]:
    """:func:`run` for coroutines (``async with metering.arun(...) as meter:``): admission and
    settlement never block the event loop."""
    scope = _scope_of(metering, identity)
    name = _agent_of(metering, agent)
    meter = await metering.begin_async(None, None, name, scope=scope)
    if isinstance(meter, HTTPError):
        raise _refused(meter)
    token = set_meter(meter)
    try:
        yield meter
    except BaseException as exc:
        meter.record_error(exc)
        raise
    finally:
        reset_meter(token)
        await metering.end_async(meter, None)


def metered(
    metering: Metering, *, identity: Identity | MemoryScope, agent: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (or coroutine function) so each call runs in its own metered run
    (:func:`run`, or :func:`arun` for a coroutine function). The identity and agent are
    checked when the decorator is applied."""
    _scope_of(metering, identity)
    _agent_of(metering, agent)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def arunner(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with arun(metering, identity, agent=agent):
                    return await afn(*args, **kwargs)

            return cast(Callable[P, R], arunner)

        @functools.wraps(fn)
        def runner(*args: P.args, **kwargs: P.kwargs) -> R:
            with run(metering, identity, agent=agent):
                return fn(*args, **kwargs)

        return runner

    return decorate
