"""Construction shared by the ASGI and WSGI ``CostMeterMiddleware`` (one keyword list)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from agenthood_mw._core.budgets import DEFAULT_MAX_ACCOUNTS
from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._engine import Metering
from agenthood_mw.metering._settings import SAME_AS_LEDGER

__all__ = ["MeterShell"]


def _is_default(name: str, value: object) -> bool:
    if name not in _DEFAULTS:
        return True  # self, app, metering, agent: not options of Metering
    default = _DEFAULTS[name]
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # an object with an unusual ``==``: treat it as set
        return False


class MeterShell:
    """The constructor both shells share, so their keywords cannot drift apart.

    Every option but ``agent`` (the shell's own: it reads the shell's request) belongs to
    :class:`Metering`, which validates it once and applies the defaults (documented on
    ``CostMeterMiddleware``). ``metering=`` passes a :class:`Metering` built beforehand
    instead of the options (one object, a handle the user keeps).
    """

    _app_kind: ClassVar[str] = "ASGI"

    def __init__(
        self,
        app: Any,
        *,
        metering: Metering | None = None,
        agent: Callable[[Any], str | None] | None = None,
        prices: object = None,
        ledger: object = "memory://",
        budgets: Iterable[Budget] = (),
        on_alert: object = "log",
        spike_rule: SpikeRule | None = None,
        tokens_per_minute: object = None,
        token_storage: str = "memory://",  # noqa: S107 - a URL
        thinking_budget: ThinkingBudget | None = None,
        thinking_budgets: Mapping[str, ThinkingBudget] | None = None,
        traces: object = SAME_AS_LEDGER,
        trace_retention: object = "30d",
        reservation_ttl: object = "10m",
        budget_storage: str = "memory://",
        budget_key_prefix: str = "agenthood:budget:",
        cost_header: bool = True,
        exempt_paths: Iterable[str] = (),
        opentelemetry: object = False,
        clock: Callable[[], float] | None = None,
        agents: Iterable[str] | None = None,
        max_budget_accounts: int = DEFAULT_MAX_ACCOUNTS,
    ) -> None:
        passed = dict(locals())
        if not callable(app):
            raise TypeError(f"app: expected an {self._app_kind} application")
        if agent is not None and not callable(agent):
            raise TypeError(f"agent: expected a callable taking the {self._app_kind} request")
        # The options the caller set (the defaults are Metering's own, asserted equal by a test).
        given = {name: value for name, value in passed.items() if not _is_default(name, value)}
        if metering is None:
            if prices is None:
                raise TypeError("prices: required (a PriceTable), unless metering= is given")
            metering = Metering(**given)
            self._owns_metering = True
        elif not isinstance(metering, Metering):
            raise TypeError("metering: expected an agenthood_mw.metering.Metering")
        elif given:
            raise TypeError(
                f"metering: pass {', '.join(sorted(given))} to Metering(...), not alongside "
                "metering="
            )
        else:
            self._owns_metering = False
        self.app = app
        #: The :class:`Metering` this middleware meters with (its ledger, traces, flush).
        self.metering = metering
        self.engine = metering
        #: ``agent=``, or ``None``: the agent is read from the route path (``/agents/{name}/run``).
        self._agent = agent

    @property
    def ledger(self) -> Any:
        """The ledger runs are written to."""
        return self.metering.ledger

    @property
    def traces(self) -> Any:
        """The trace store (``None`` when disabled)."""
        return self.metering.traces


#: Every option of :class:`Metering` and its default, read from the one signature that lists them.
_DEFAULTS: dict[str, object] = {
    name: param.default
    for name, param in inspect.signature(MeterShell.__init__).parameters.items()
    if name not in ("self", "app", "metering", "agent")
}
