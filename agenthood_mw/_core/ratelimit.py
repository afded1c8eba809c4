"""Sans-I/O rate-limit policy: rule validation, key derivation, response headers.

Everything that can be decided once is decided at construction (compiled path templates,
parsed proxy networks, the ``RateLimit-Policy`` field); per request only the key is derived and
the ``RateLimit`` numbers are formatted.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.gcra import Policy, RateLimitDecision
from agenthood_mw._errors import HTTPError

__all__ = [
    "STORAGE_SCHEMES",
    "STRATEGIES",
    "UNAVAILABLE",
    "ClientAddress",
    "CompiledRule",
    "Planner",
    "RateLimitDecision",
    "RateLimitRule",
    "Verdict",
    "compile_rules",
    "compile_template",
    "decision_headers",
    "identity_key",
    "retry_after_seconds",
    "validate_storage",
    "validate_strategy",
]

STRATEGIES = ("gcra", "moving-window", "sliding-window", "fixed-window")
STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_strategy(strategy: object) -> str:
    """Return ``strategy`` or raise naming the option."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}; got {strategy!r}")
    assert isinstance(strategy, str)
    return strategy


def validate_storage(storage: object) -> str:
    """Return the scheme of the storage URL or raise naming the option."""
    if not isinstance(storage, str):
        raise TypeError("storage: expected a URL string such as 'memory://' or 'redis://host'")
    scheme, sep, _ = storage.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES:
        raise ValueError(
            f"storage: unknown storage {storage.split('@')[-1]!r}; expected memory://, "
            "redis://, rediss://, redis+sentinel:// or redis+cluster://"
        )
    return scheme


def _positive_int(value: object, option: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{option}: must be at least {minimum}, got {value}")
    return value


class RateLimitRule:
    """One limit, applied per key (user, tenant user or client address).

    Args:
        window: ``"30s"``, ``"1m"``, ``"1h"``, ``"1d"`` or seconds.
        max: sustained admissions per window (>= 1).
        burst: extra admissions allowed at once (>= 0).
        path: ``None`` for every request, or a path template such as ``"/agents/{name}/run"``;
            each value of a template parameter gets its own quota (per agent, per user).
        methods: restrict the rule to these HTTP methods (``None``: all).
        name: the policy name shown in the ``RateLimit`` headers.
    """

    __slots__ = ("burst", "max", "methods", "name", "path", "window")

    def __init__(
        self,
        *,
        window: object = "1m",
        max: int,
        burst: int = 0,
        path: str | None = None,
        methods: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.window = parse_duration(window, option="window")
        self.max = _positive_int(max, "max", 1)
        self.burst = _positive_int(burst, "burst", 0)
        if path is not None:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"path: a rule's path must start with '/', got {path!r}")
            compile_template(path)  # fail now, naming the option
        self.path = path
        if isinstance(methods, str):
            raise TypeError("methods: expected a list of HTTP methods, not a single string")
        self.methods = None if methods is None else frozenset(m.upper() for m in methods)
        if name is None:
            name = "default" if path is None else _derive_name(path)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name: rule names are 1-64 of [A-Za-z0-9_.-], got {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return (
            f"RateLimitRule(window={self.window!r}, max={self.max}, burst={self.burst}, "
            f"path={self.path!r}, name={self.name!r})"
        )


_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::(str|path|int))?}")
_CONVERTORS = {"str": "[^/]+", "path": ".*", "int": "[0-9]+"}


def compile_template(path: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """Compile an operator's path template (``/agents/{name}/run``, ``{rest:path}``, ``{n:int}``).

    Literal text is escaped; each parameter matches one segment (``str``), the rest of the path
    (``path``) or digits (``int``). Returns the full-match regex and the parameter names.
    """
    parts = []
    names: list[str] = []
    pos = 0
    for m in _PARAM.finditer(path):
        parts.append(re.escape(path[pos : m.start()]))
        name = m.group(1)
        if name in names:
            raise ValueError(f"path: parameter {{{name}}} appears twice in {path!r}")
        names.append(name)
        parts.append(f"(?P<{name}>{_CONVERTORS[m.group(2) or 'str']})")
        pos = m.end()
    rest = path[pos:]
    if "{" in rest or "}" in rest or any("{" in p or "}" in p for p in parts[::2]):
        raise ValueError(f"path: malformed template {path!r}; use {{name}} or {{name:path}}")
    parts.append(re.escape(rest))
    return re.compile("^" + "".join(parts) + "$"), tuple(names)


def _derive_name(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path).strip("-")
    return (name or "root")[:64]


class CompiledRule:
    """A rule ready for the hot path: its :class:`Policy`, matcher and header text."""

    __slots__ = (
        "header_prefix",
        "methods",
        "name",
        "params",
        "policy",
        "policy_bytes",
        "policy_header",
        "policy_item",
        "regex",
        "suffix",
    )

    def __init__(self, rule: RateLimitRule) -> None:
        self.name = rule.name
        self.policy = Policy.create(
            window=rule.window, max=rule.max, burst=rule.burst, name=rule.name
        )
        self.methods = rule.methods
        if rule.path is None:
            self.regex: re.Pattern[str] | None = None
            self.params: tuple[str, ...] = ()
        else:
            self.regex, self.params = compile_template(rule.path)
        # Structured-field integers: a fractional window is advertised rounded up.
        self.policy_item = f'"{self.name}";q={self.policy.capacity};w={math.ceil(rule.window)}'
        self.policy_bytes = self.policy_item.encode()
        self.header_prefix = f'"{self.name}";r='.encode()
        self.policy_header = (b"ratelimit-policy", self.policy_bytes)
        self.suffix = "|" + self.name

    def ratelimit_item(self, remaining: int, reset_after: float) -> bytes:
        """This rule's member of the ``RateLimit`` field, as bytes."""
        return b"%s%d;t=%d" % (self.header_prefix, remaining, math.ceil(reset_after))

    def header_pair(
        self, remaining: int, reset_after: float
    ) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        """``RateLimit-Policy`` and ``RateLimit`` of this rule alone (the single-rule hot
        path): the same bytes as :meth:`ratelimit_item`, in one call."""
        field = b"%s%d;t=%d" % (self.header_prefix, remaining, math.ceil(reset_after))
        return (self.policy_header, (b"ratelimit", field))

    def match(self, method: str, path: str) -> str | None:
        """``None`` when the rule does not apply, else the key suffix for this request."""
        if self.methods is not None and method not in self.methods:
            return None
        if self.regex is None:
            return self.name
        m = self.regex.match(path)
        if m is None:
            return None
        if not self.params:
            return self.name
        values = ":".join(quote(m.group(p), safe="") for p in self.params)
        return f"{self.name}:{values}"


def compile_rules(rules: Sequence[RateLimitRule]) -> tuple[CompiledRule, ...]:
    """Compile rules once; names must be unique."""
    seen: set[str] = set()
    compiled = []
    for rule in rules:
        if not isinstance(rule, RateLimitRule):
            raise TypeError("rules: every item must be a RateLimitRule")
        if rule.name in seen:
            raise ValueError(f"rules: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        compiled.append(CompiledRule(rule))
    return tuple(compiled)


def identity_key(user: Any) -> str | None:
    """The rate-limit key of an authenticated ``scope["user"]``, else ``None``.

    ``u:<tenant>:<user_id>`` with both parts percent-encoded, so user text can never forge
    another user's key.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    user_id = getattr(user, "user_id", None)
    if not isinstance(user_id, str):
        user_id = getattr(user, "identity", None) or getattr(user, "display_name", None)
    if not isinstance(user_id, str) or not user_id:
        return None
    tenant = getattr(user, "tenant", None)
    tenant_part = quote(tenant, safe="") if isinstance(tenant, str) and tenant else ""
    return f"u:{tenant_part}:{quote(user_id, safe='')}"


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    """Finds the client address, trusting ``X-Forwarded-For`` only from configured proxies.

    The peer address is used unless it is a trusted proxy; then ``X-Forwarded-For`` is read
    from the right, skipping trusted proxies, and the first other address is the client. An
    entry that is not an IP address stops the walk at the proxy that sent it.
    """

    __slots__ = ("_networks",)

    def __init__(self, trusted_proxies: Collection[str] = ()) -> None:
        if isinstance(trusted_proxies, str):
            raise TypeError("trusted_proxies: expected a list of addresses or networks")
        nets: list[_Network] = []
        for item in trusted_proxies:
            try:
                nets.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address or network"
                ) from None
        self._networks = tuple(nets)

    @property
    def enabled(self) -> bool:
        """Whether any proxy is trusted."""
        return bool(self._networks)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client address for a request from ``peer`` with these XFF header values."""
        client = peer or "unknown"
        if not self._networks or not forwarded_for or not self._trusted(client):
            return client
        hops = [h.strip() for value in forwarded_for for h in value.split(",")]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return client
            client = hop
            if not self._trusted(hop):
                return hop
        return client


def retry_after_seconds(retry_after: float) -> int:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(retry_after))


def decision_headers(
    decisions: Sequence[RateLimitDecision],
    policy_field: str,
    *,
    legacy: bool,
) -> list[tuple[str, str]]:
    """``RateLimit-Policy`` / ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10 form).

    ``policy_field`` is precomputed by the caller; the legacy ``X-RateLimit-*`` fields describe
    the most restrictive decision.
    """
    items = []
    tightest = decisions[0]
    for d in decisions:
        items.append(f'"{d.policy}";r={d.remaining};t={math.ceil(d.reset_after)}')
        if (not d.allowed, -d.remaining) > (not tightest.allowed, -tightest.remaining):
            tightest = d
    headers = [("ratelimit-policy", policy_field), ("ratelimit", ", ".join(items))]
    if legacy:
        headers += [
            ("x-ratelimit-limit", str(tightest.limit)),
            ("x-ratelimit-remaining", str(tightest.remaining)),
            ("x-ratelimit-reset", str(math.ceil(tightest.reset_after))),
        ]
    return headers


class Verdict(NamedTuple):
    """What a shell does with a request's outcomes.

    Attributes:
        decision: the deciding rule's decision (the refusing one, else the tightest).
        headers: response headers to add (empty when headers are disabled).
        error: the 429 to send instead of calling the app, or ``None`` to admit.
    """

    decision: RateLimitDecision
    headers: list[tuple[str, str]]
    error: HTTPError | None


UNAVAILABLE = HTTPError(
    503,
    "rate_limit_unavailable",
    "Rate limiting is temporarily unavailable, so the request was not processed; "
    "try again shortly.",
)


class Planner:
    """The sans-I/O half of the middleware: which rules apply, and what the outcome means.

    Built once from the middleware's options (validated here, so every mistake fails at
    construction with the option's name).
    """

    __slots__ = ("_policy_fields", "headers", "legacy", "only", "rules")

    def __init__(
        self,
        *,
        window: object,
        max: int | None,
        burst: int,
        rules: Sequence[RateLimitRule],
        headers: bool,
        legacy_headers: bool,
    ) -> None:
        if isinstance(rules, RateLimitRule):
            rules = [rules]
        all_rules = list(rules)
        if max is not None:
            all_rules.insert(0, RateLimitRule(window=window, max=max, burst=burst))
        else:
            parse_duration(window, option="window")
            _positive_int(burst, "burst", 0)
        if not all_rules:
            raise ValueError("max: required (or give rules=[RateLimitRule(...), ...])")
        self.rules = compile_rules(all_rules)
        first = self.rules[0]
        self.only = (
            first if len(self.rules) == 1 and first.regex is None and not first.methods else None
        )
        self.headers = bool(headers)
        self.legacy = bool(legacy_headers)
        self._policy_fields: dict[tuple[str, ...], str] = {}

    @property
    def windows(self) -> tuple[float, ...]:
        """Every rule's window (seconds)."""
        return tuple(r.policy.window for r in self.rules)

    def match(self, method: str, path: str) -> list[tuple[CompiledRule, str]]:
        """The rules that apply to this request, each with its key suffix."""
        out = []
        for rule in self.rules:
            suffix = rule.match(method, path)
            if suffix is not None:
                out.append((rule, suffix))
        return out

    def _policy_field(self, rules: Sequence[CompiledRule]) -> str:
        names = tuple(r.name for r in rules)
        text = self._policy_fields.get(names)
        if text is None:
            text = ", ".join(r.policy_item for r in rules)
            if len(self._policy_fields) < 1024:
                self._policy_fields[names] = text
        return text

    def verdict(
        self, rules: Sequence[CompiledRule], decisions: Sequence[RateLimitDecision]
    ) -> Verdict:
        """Turn the storage decisions of ``rules`` into one decision, headers and maybe a 429."""
        if len(decisions) == 1:
            decision = decisions[0]
        elif decisions[0].allowed:
            decision = min(decisions, key=lambda d: d.remaining)
        else:
            decision = max(decisions, key=lambda d: d.retry_after)
        headers = (
            decision_headers(decisions, self._policy_field(rules), legacy=self.legacy)
            if self.headers
            else []
        )
        if decision.allowed:
            return Verdict(decision, headers, None)
        if math.isinf(decision.retry_after):
            error = HTTPError(
                429,
                "rate_limited",
                f"This request costs more than the {decision.policy!r} limit allows "
                f"({decision.limit} per window); it can never be admitted.",
                headers=tuple(headers),
                extra={"policy": decision.policy, "limit": decision.limit},
            )
        else:
            wait = retry_after_seconds(decision.retry_after)
            error = HTTPError(
                429,
                "rate_limited",
                f"Rate limit {decision.policy!r} exceeded; retry after {wait} s.",
                headers=(("retry-after", str(wait)), *headers),
                extra={"policy": decision.policy, "limit": decision.limit, "retry_after": wait},
            )
        return Verdict(decision, headers, error)
