"""Sans-I/O validation of ``POST /agents/{name}/run`` requests.

Every refusal is an :class:`~agenthood_mw._errors.HTTPError` decided before anything runs or is
charged: 415 wrong content type, 413 body too large, 422 malformed JSON, wrong JSON types,
missing/empty/oversized task, a task that is not valid Unicode (lone surrogate), bad budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from agenthood_mw._errors import HTTPError

__all__ = [
    "BUDGET_FIELDS",
    "RunRequest",
    "RunRequestError",
    "check_content_length",
    "check_content_type",
    "parse_run_request",
    "too_large",
]

#: Request budget keys (camelCase, as the rest of the JSON) → ThinkingBudget keywords.
BUDGET_FIELDS: Final = {
    "maxSteps": "max_steps",
    "maxTokens": "max_tokens",
    "maxCost": "max_cost",
    "maxSeconds": "max_seconds",
}
_ALLOWED_TOP: Final = frozenset({"task", "budget"})


class RunRequestError(Exception):
    """A refused run request; ``.error`` is the response to send."""

    def __init__(self, error: HTTPError) -> None:
        super().__init__(error.message)
        self.error = error


def _unprocessable(type_: str, message: str) -> RunRequestError:
    return RunRequestError(HTTPError(422, type_, message))


def too_large(limit: int) -> RunRequestError:
    """The 413 refusal for a body above ``limit`` bytes."""
    return RunRequestError(
        HTTPError(413, "payload_too_large", f"the request body exceeds {limit} bytes")
    )


@dataclass(frozen=True)
class RunRequest:
    """A validated run request: the task and the budget limits it asks to lower."""

    task: str
    budget: Mapping[str, Any] = field(default_factory=dict)


def check_content_type(value: str | None) -> None:
    """Accept ``application/json`` (any parameters, e.g. ``; charset=utf-8``) only."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RunRequestError(
            HTTPError(
                415,
                "unsupported_media_type",
                "send the request body as JSON with 'Content-Type: application/json'",
            )
        )


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse early when the declared length is above ``limit`` (the body is still counted
    while it is read: the header may be absent or lie)."""
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise RunRequestError(
            HTTPError(400, "invalid_request", "invalid Content-Length header")
        ) from None
    if length > limit:
        raise too_large(limit)


def _budget(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _unprocessable("invalid_budget", "'budget' must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        option = BUDGET_FIELDS.get(key)
        if option is None:
            allowed = ", ".join(BUDGET_FIELDS)
            raise _unprocessable(
                "invalid_budget", f"unknown budget field {key[:40]!r}; allowed: {allowed}"
            )
        if value is None:
            continue
        if option == "max_cost":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _unprocessable("invalid_budget", "'budget.maxCost' must be a number")
            try:
                cost = Decimal(str(value))
            except InvalidOperation:
                raise _unprocessable(
                    "invalid_budget", "'budget.maxCost' must be a number"
                ) from None
            if not cost.is_finite() or cost <= 0:
                raise _unprocessable("invalid_budget", "'budget.maxCost' must be positive")
            out[option] = cost
        elif option == "max_seconds":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _unprocessable("invalid_budget", f"'budget.{key}' must be a number")
            if not math.isfinite(value) or value <= 0:
                raise _unprocessable("invalid_budget", f"'budget.{key}' must be positive")
            out[option] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _unprocessable("invalid_budget", f"'budget.{key}' must be an integer")
            if value < 1:
                raise _unprocessable("invalid_budget", f"'budget.{key}' must be at least 1")
            out[option] = value
    return out


def parse_run_request(body: bytes, *, max_task_chars: int) -> RunRequest:
    """Validate a run request body (already size-checked)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _unprocessable("invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _unprocessable("invalid_request", 'the request body must be a JSON object: {"task"}')
    unknown = sorted(set(data) - _ALLOWED_TOP)
    if unknown:
        raise _unprocessable(
            "invalid_request", f"unknown field {unknown[0][:40]!r}; allowed: task, budget"
        )
    if "task" not in data:
        raise _unprocessable("invalid_task", "'task' is required")
    task = data["task"]
    if not isinstance(task, str):
        raise _unprocessable("invalid_task", "'task' must be a string")
    try:
        task.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; no UTF-8 text can carry it
        raise _unprocessable(
            "invalid_task", "'task' must be valid Unicode text (it contains a lone surrogate)"
        ) from None
    if not task.strip():
        raise _unprocessable("invalid_task", "'task' must not be empty")
    if len(task) > max_task_chars:
        raise _unprocessable("invalid_task", f"'task' is longer than {max_task_chars} characters")
    return RunRequest(task=task, budget=_budget(data.get("budget")))
