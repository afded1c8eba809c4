"""Construction shared by the ASGI and WSGI ``CostMeterMiddleware`` (one keyword list)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._engine import Metering

__all__ = ["MeterShell"]


class _Default:
    """An option the caller did not pass: :class:`Metering` applies its own default."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT: Final[Any] = _Default()


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
        prices: object = _DEFAULT,
        ledger: object = _DEFAULT,
        budgets: Iterable[Budget] = _DEFAULT,
        on_alert: object = _DEFAULT,
        spike_rule: SpikeRule | None = _DEFAULT,
        tokens_per_minute: object = _DEFAULT,
        token_storage: str = _DEFAULT,
        thinking_budget: ThinkingBudget | None = _DEFAULT,
        thinking_budgets: Mapping[str, ThinkingBudget] | None = _DEFAULT,
        traces: object = _DEFAULT,
        trace_retention: object = _DEFAULT,
        reservation_ttl: object = _DEFAULT,
        budget_storage: str = _DEFAULT,
        budget_key_prefix: str = _DEFAULT,
        cost_header: bool = _DEFAULT,
        exempt_paths: Iterable[str] = _DEFAULT,
        opentelemetry: object = _DEFAULT,
        clock: Callable[[], float] | None = _DEFAULT,
        agents: Iterable[str] | None = _DEFAULT,
        max_budget_accounts: int = _DEFAULT,
    ) -> None:
        passed = dict(locals())
        if not callable(app):
            raise TypeError(f"app: expected an {self._app_kind} application")
        if agent is not None and not callable(agent):
            raise TypeError(f"agent: expected a callable taking the {self._app_kind} request")
        given = {
            name: value
            for name, value in passed.items()
            if value is not _DEFAULT and name not in ("self", "app", "metering", "agent")
        }
        if metering is None:
            if "prices" not in given:
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
