"""Construction shared by the ASGI and WSGI ``CostMeterMiddleware`` (one keyword list)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from agenthood_mw._core.budgets import DEFAULT_MAX_ACCOUNTS
from agenthood_mw._core.spikes import SpikeRule
from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw.metering._budget import Budget
from agenthood_mw.metering._engine import _SAME_AS_LEDGER, MeteringEngine

__all__ = ["MeterShell"]


class MeterShell:
    """The constructor both shells share, so their keywords cannot drift apart.

    Validation lives in :class:`MeteringEngine`; a shell sets ``_app_kind`` and
    ``_default_agent`` and adds its own per-instance state in :meth:`_setup`.
    """

    _app_kind: ClassVar[str] = "ASGI"

    def _builtin_agent(self) -> Callable[[Any], str | None]:
        """The agent resolver used when no ``agent=`` callable is given (per shell)."""
        raise NotImplementedError  # pragma: no cover

    def __init__(
        self,
        app: Any,
        *,
        prices: object,
        ledger: object = "memory://",
        budgets: Iterable[Budget] = (),
        on_alert: object = "log",
        spike_rule: SpikeRule | None = None,
        tokens_per_minute: object = None,
        token_storage: str = "memory://",  # noqa: S107 - a URL
        agent: Callable[[Any], str | None] | None = None,
        thinking_budget: ThinkingBudget | None = None,
        thinking_budgets: Mapping[str, ThinkingBudget] | None = None,
        traces: object = _SAME_AS_LEDGER,
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
        if not callable(app):
            raise TypeError(f"app: expected an {self._app_kind} application")
        if agent is not None and not callable(agent):
            raise TypeError(f"agent: expected a callable taking the {self._app_kind} request")
        self.app = app
        self._agent = agent or self._builtin_agent()
        self._custom_agent = agent is not None
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        self.engine = MeteringEngine(
            prices=prices,
            ledger=ledger,
            budgets=budgets,
            on_alert=on_alert,
            spike_rule=spike_rule,
            tokens_per_minute=tokens_per_minute,
            token_storage=token_storage,
            thinking_budget=thinking_budget,
            thinking_budgets=thinking_budgets,
            traces=traces,
            trace_retention=trace_retention,
            reservation_ttl=reservation_ttl,
            budget_storage=budget_storage,
            budget_key_prefix=budget_key_prefix,
            cost_header=cost_header,
            exempt_paths=exempt_paths,
            opentelemetry=opentelemetry,
            agents=agents,
            max_budget_accounts=max_budget_accounts,
            **extra,
        )
        self._setup()

    def _setup(self) -> None:
        """Per-shell state derived from the validated options (override in a shell)."""

    @property
    def ledger(self) -> Any:
        """The ledger runs are written to."""
        return self.engine.ledger

    @property
    def traces(self) -> Any:
        """The trace store (``None`` when disabled)."""
        return self.engine.traces
