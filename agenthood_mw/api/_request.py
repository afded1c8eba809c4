"""Sans-I/O validation of ``POST /agents/{name}/run`` requests.

Every refusal is an :class:`~agenthood_mw._errors.HTTPError` decided before anything runs or is
charged: 415 wrong content type, 413 body too large, 422 malformed JSON, wrong JSON types,
missing/empty/oversized task, a task that is not valid Unicode (lone surrogate) or carries a
control character, bad budget (a budget field is a JSON number within a documented range).
JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused before it is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from agenthood_mw._core.thinking import ThinkingBudget
from agenthood_mw._errors import HTTPError

__all__ = [
    "BUDGET_FIELDS",
    "BUDGET_RANGES",
    "MAX_JSON_DEPTH",
    "RunRequest",
    "RunRequestError",
    "check_content_length",
    "check_content_type",
    "check_task",
    "parse_budget",
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
#: The accepted range (inclusive) of each request budget field. Integers for steps and tokens;
#: dollars and seconds are JSON numbers (never strings, booleans, NaN or Infinity).
BUDGET_RANGES: Final[dict[str, tuple[int | Decimal, int | Decimal]]] = {
    "maxSteps": (1, 1_000_000),
    "maxTokens": (1, 1_000_000_000),
    "maxCost": (Decimal("0.000000001"), Decimal(1_000_000)),
    "maxSeconds": (Decimal("0.001"), Decimal(604_800)),
}
#: Deepest JSON nesting accepted in a run request (a valid request needs two levels).
MAX_JSON_DEPTH: Final = 32
_ALLOWED_TOP: Final = frozenset({"task", "budget", "conversationId", "stream"})
#: Longest accepted ``conversationId`` (characters).
MAX_CONVERSATION_ID: Final = 128
#: Control characters refused in a task: C0 (except tab, line feed, carriage return), DEL, C1.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: JSON strings (skipped whole, so their brackets do not count) and brackets.
_JSON_TOKENS: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


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
    """A validated run request: the task and the budget limits it asks to lower (as
    ``ThinkingBudget`` keywords, and built: ``thinking_budget`` is ``None`` without any)."""

    task: str
    budget: Mapping[str, Any] = field(default_factory=dict)
    thinking_budget: ThinkingBudget | None = None
    conversation_id: str | None = None
    stream: bool = False


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
    while it is read: the header may be absent or lie). The header is ``1*DIGIT`` (RFC 9110
    8.6): a sign, an underscore, blanks or more than 19 digits are refused with 400."""
    if value is None:
        return
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise RunRequestError(HTTPError(400, "invalid_request", "invalid Content-Length header"))
    if int(value) > limit:
        raise too_large(limit)


def _number(key: str, value: object) -> Decimal:
    """A JSON number (never a string, a boolean, ``NaN`` or ``Infinity``) as an exact decimal."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _unprocessable("invalid_budget", f"'budget.{key}' must be a JSON number")
    return Decimal(value)


def _text(value: int | Decimal) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _limit(key: str, option: str, value: object) -> int | Decimal | float:
    """One budget field, checked against its documented range before any conversion (a huge
    integer or exponent is refused here, never overflowing a float or a decimal later)."""
    low, high = BUDGET_RANGES[key]
    between = f"'budget.{key}' must be between {_text(low)} and {_text(high)}"
    if option in ("max_steps", "max_tokens"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _unprocessable("invalid_budget", f"'budget.{key}' must be an integer")
        if not low <= value <= high:
            raise _unprocessable("invalid_budget", between)
        return value
    number = _number(key, value)
    if not number.is_finite() or not low <= number <= high:
        raise _unprocessable("invalid_budget", between)
    return number if option == "max_cost" else float(number)


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
        if value is not None:
            out[option] = _limit(key, option, value)
    return out


def _thinking_budget(budget: Mapping[str, Any]) -> ThinkingBudget | None:
    if not budget:
        return None
    try:
        return ThinkingBudget(**budget)
    except (ValueError, TypeError, ArithmeticError):  # defence in depth: the ranges exclude it
        raise _unprocessable("invalid_budget", "the budget is out of range") from None


def _decimal(text: str) -> Decimal:
    """A JSON fraction or exponent, exactly (an exponent beyond what a decimal can hold, such
    as ``1e99999999999999999999``, is refused, not raised)."""
    try:
        return Decimal(text)
    except ArithmeticError:
        raise _unprocessable("invalid_json", f"the number {text[:40]} is out of range") from None


def _refuse_constant(name: str) -> object:
    raise _unprocessable("invalid_json", f"{name} is not a JSON number")


def _check_depth(body: bytes) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` before parsing it (the parser is
    recursive: 32 000 levels would raise ``RecursionError``). Brackets inside strings do not
    count; a body with few brackets is not scanned at all."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    for match in _JSON_TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
        elif token in (b"]", b"}"):
            depth -= 1


def _too_deep() -> RunRequestError:
    return _unprocessable(
        "invalid_json", f"the request body is nested deeper than {MAX_JSON_DEPTH} levels"
    )


def _load(body: bytes) -> Any:
    _check_depth(body)
    try:
        return json.loads(body, parse_float=_decimal, parse_constant=_refuse_constant)
    except RecursionError:  # a backstop: _check_depth refuses such bodies first
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise _unprocessable("invalid_json", "the request body is not valid JSON") from None


def _check_task(task: object, max_task_chars: int) -> str:
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
    bad = _CONTROL.search(task)
    if bad is not None:
        raise _unprocessable(
            "invalid_task",
            f"'task' contains the control character U+{ord(bad.group()):04X} (only tab, line "
            "feed and carriage return are allowed)",
        )
    return task


def parse_run_request(body: bytes, *, max_task_chars: int) -> RunRequest:
    """Validate a run request body (already size-checked)."""
    data = _load(body)
    if not isinstance(data, dict):
        raise _unprocessable("invalid_request", 'the request body must be a JSON object: {"task"}')
    unknown = sorted(set(data) - _ALLOWED_TOP)
    if unknown:
        raise _unprocessable(
            "invalid_request",
            f"unknown field {unknown[0][:40]!r}; allowed: task, budget, conversationId, stream",
        )
    if "task" not in data:
        raise _unprocessable("invalid_task", "'task' is required")
    task = _check_task(data["task"], max_task_chars)
    budget = _budget(data.get("budget"))
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise _unprocessable("invalid_request", "'stream' must be true or false")
    return RunRequest(
        task=task,
        budget=budget,
        thinking_budget=_thinking_budget(budget),
        conversation_id=_conversation_id(data.get("conversationId")),
        stream=stream,
    )


def _conversation_id(value: object) -> str | None:
    """An optional conversation name (the agent keeps one thread per user and conversation)."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_CONVERSATION_ID
        or not value.isprintable()
    ):
        raise _unprocessable(
            "invalid_request",
            f"'conversationId' must be a string of 1 to {MAX_CONVERSATION_ID} printable characters",
        )
    return value


def check_task(task: object, max_task_chars: int) -> str:
    """A task's text, validated as in a run request (422 ``invalid_task`` otherwise)."""
    return _check_task(task, max_task_chars)


def parse_budget(raw: object) -> ThinkingBudget | None:
    """A request ``budget`` object (``maxSteps`` ...) as the ThinkingBudget it asks for."""
    return _thinking_budget(_budget(raw))
