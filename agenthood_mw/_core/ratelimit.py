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
from typing import Any, Final, NamedTuple
from urllib.parse import quote

from agenthood_mw._core.durations import parse_duration
from agenthood_mw._core.gcra import Policy, RateLimitDecision
from agenthood_mw._core.keys import rate_limit_subject, scope_of
from agenthood_mw._errors import HTTPError

__all__ = [
    "NEVER_ADMITTED_STATUS",
    "NEVER_ADMITTED_TYPE",
    "NOT_LIMITED",
    "STORAGE_SCHEMES",
    "STRATEGIES",
    "UNAVAILABLE",
    "UNAVAILABLE_RETRY_AFTER",
    "ClientAddress",
    "CompiledRule",
    "Planner",
    "RateLimitDecision",
    "RateLimitRule",
    "Verdict",
    "check_ipv6_prefix",
    "compile_rules",
    "compile_template",
    "decision_headers",
    "identity_key",
    "normalise_address",
    "parse_address",
    "refusal",
    "reset_seconds",
    "retry_after_seconds",
    "validate_storage",
    "validate_strategy",
    "whole_seconds",
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
        "methods",
        "name",
        "params",
        "policy",
        "policy_header",
        "policy_item",
        "ratelimit_prefix",
        "regex",
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
        #: This rule alone: the ``RateLimit-Policy`` header, and its ``RateLimit`` member's start.
        self.policy_header = (b"ratelimit-policy", self.policy_item.encode())
        self.ratelimit_prefix = f'"{self.name}";r='.encode()

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
    """The rate-limit subject of an authenticated ``scope["user"]``, else ``None``.

    Derived from the user's :class:`~agenthood_mw.MemoryScope` (:mod:`agenthood_mw._core.keys`),
    so user text can never forge another user's key. ``None`` too when no scope can be minted
    for the user (the reserved anonymous tenant, a malformed id).
    """
    scope = scope_of(user)
    return None if scope is None else rate_limit_subject(scope)


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> _Address | None:
    """An IP address from a peer or ``X-Forwarded-For`` entry, or ``None``.

    Accepts surrounding spaces, any case, ``[v6]`` and ``[v6]:port`` / ``v4:port``, and a
    zone id (``fe80::1%eth0``, dropped). An IPv4-mapped IPv6 address (``::ffff:8.8.4.4``) is
    the IPv4 address.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # v4:port
    text = text.partition("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalise_address(text: str, *, ipv6_prefix: int = 128) -> str:
    """The canonical text of a client address: IPv4 dotted-quad; IPv6 compressed, or its
    ``/ipv6_prefix`` network (``2001:db8:1:2::/64``) when the prefix is below 128. Text that is
    not an IP address is returned stripped, unchanged otherwise."""
    ip = parse_address(text)
    if ip is None:
        return text.strip()
    if isinstance(ip, ipaddress.IPv6Address) and ipv6_prefix < 128:
        return str(ipaddress.IPv6Network((int(ip), ipv6_prefix), strict=False))
    return str(ip)


def check_ipv6_prefix(value: object, *, option: str = "ipv6_prefix") -> int:
    """Validate the IPv6 grouping prefix (1-128 bits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option}: expected an int number of bits, got {type(value).__name__}")
    if not 1 <= value <= 128:
        raise ValueError(f"{option}: expected 1 to 128 bits, got {value}")
    return value


class ClientAddress:
    """Finds the client address, trusting ``X-Forwarded-For`` only from configured proxies.

    The peer address is used unless it is a trusted proxy; then ``X-Forwarded-For`` is read
    from the right, skipping trusted proxies, and the first other address is the client. An
    entry that is not an IP address stops the walk at the proxy that sent it. The result is
    normalised (:func:`normalise_address`): every spelling of one address, and every address
    of one IPv6 ``/ipv6_prefix`` network, gives the same text.
    """

    __slots__ = ("_networks", "ipv6_prefix")

    def __init__(self, trusted_proxies: Collection[str] = (), *, ipv6_prefix: int = 128) -> None:
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
        self.ipv6_prefix = check_ipv6_prefix(ipv6_prefix)

    @property
    def enabled(self) -> bool:
        """Whether any proxy is trusted."""
        return bool(self._networks)

    def _trusted(self, ip: _Address | None) -> bool:
        return ip is not None and any(ip in net for net in self._networks)

    def resolve(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The normalised client address for a request from ``peer`` with these XFF values."""
        return normalise_address(self._client(peer, forwarded_for), ipv6_prefix=self.ipv6_prefix)

    def _client(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        client = peer or "unknown"
        if not self._networks or not forwarded_for or not self._trusted(parse_address(client)):
            return client
        hops = [h.strip() for value in forwarded_for for h in value.split(",")]
        for hop in reversed(hops):
            ip = parse_address(hop)
            if ip is None:
                return client
            client = hop
            if not self._trusted(ip):
                return hop
        return client


#: Float noise ignored when rounding a wait up to whole seconds (the clock arithmetic is in
#: float seconds in memory and whole microseconds in Redis): 60.0000000001 s is 60 s.
ROUNDING: Final = 1e-6


def whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to whole seconds, ignoring :data:`ROUNDING` noise."""
    return max(0, math.ceil(seconds - ROUNDING))


def retry_after_seconds(retry_after: float) -> int:
    """``Retry-After`` in whole seconds, rounded up, at least 1."""
    return max(1, whole_seconds(retry_after))


def reset_seconds(decision: RateLimitDecision) -> int:
    """The ``t`` of a decision's ``RateLimit`` member: whole seconds (rounded up) until more
    quota is available (draft-ietf-httpapi-ratelimit-headers, Reset Parameter)."""
    more = decision.more_after
    if more is None:
        more = decision.reset_after
    return max(0, math.ceil(more - ROUNDING))


def decision_headers(
    decisions: Sequence[RateLimitDecision],
    policy_field: str,
    *,
    legacy: bool,
) -> list[tuple[str, str]]:
    """``RateLimit-Policy`` / ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10 form).

    ``t`` is :func:`reset_seconds` (until more quota is available). ``policy_field`` is
    precomputed by the caller; the legacy ``X-RateLimit-*`` fields describe the most
    restrictive decision (``X-RateLimit-Reset``: until its quota is fully restored).
    """
    items = []
    tightest = decisions[0]
    for d in decisions:
        items.append(f'"{d.policy}";r={d.remaining};t={reset_seconds(d)}')
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
    """What the limiter decided for one request (:meth:`RateLimitEngine.decide`).

    Attributes:
        decision: the deciding rule's decision (the refusing one, else the tightest);
            ``None`` when the storage failed or the request is not limited.
        headers: response headers to add, as latin-1 ``(name, value)`` bytes the way they go
            on the wire (``RateLimit-Policy``, ``RateLimit``, ...; empty when headers are
            disabled or nothing was decided).
        error: the response to send instead of calling the app (429, 403 for a request that
            can never be admitted, 503 when the storage failed and ``fail_open=False``), or
            ``None`` to admit.
        limited: ``False`` when the request is not limited at all (an exempt path, no key,
            no rule applies): nothing was counted and nothing is shared with the app.
    """

    decision: RateLimitDecision | None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    error: HTTPError | None = None
    limited: bool = True

    @property
    def allowed(self) -> bool:
        """Whether the app is to be called."""
        return self.error is None


#: The verdict for a request the limiter does not apply to.
NOT_LIMITED: Final = Verdict(None, limited=False)

#: ``Retry-After`` (seconds) of the 503 sent when the storage fails and ``fail_open=False``.
UNAVAILABLE_RETRY_AFTER: Final = 5

UNAVAILABLE = HTTPError(
    503,
    "rate_limit_unavailable",
    "Rate limiting is temporarily unavailable, so the request was not processed; "
    "try again shortly.",
    headers=(("retry-after", str(UNAVAILABLE_RETRY_AFTER)),),
)

#: Status and ``type`` of a request whose cost exceeds a rule's ``max + burst``: it can never be
#: admitted, so it is not a (temporary) 429.
NEVER_ADMITTED_STATUS: Final = 403
NEVER_ADMITTED_TYPE: Final = "rate_limit_cost_too_high"


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
        """Turn the storage decisions of ``rules`` into one decision, headers and maybe a
        refusal."""
        if len(decisions) == 1:
            return self.verdict_one(rules[0], decisions[0])
        if decisions[0].allowed:
            decision = min(decisions, key=lambda d: d.remaining)
        else:
            decision = max(decisions, key=lambda d: d.retry_after)
        headers = (
            _encoded(decision_headers(decisions, self._policy_field(rules), legacy=self.legacy))
            if self.headers
            else ()
        )
        return _verdict(decision, headers)

    def verdict_one(self, rule: CompiledRule, decision: RateLimitDecision) -> Verdict:
        """:meth:`verdict` of a request that only ``rule`` applies to (the same bytes)."""
        if not self.headers:
            headers: tuple[tuple[bytes, bytes], ...] = ()
        elif self.legacy:
            headers = _encoded(decision_headers([decision], rule.policy_item, legacy=True))
        else:
            member = b"%s%d;t=%d" % (
                rule.ratelimit_prefix,
                decision.remaining,
                reset_seconds(decision),
            )
            headers = (rule.policy_header, (b"ratelimit", member))
        if decision.allowed:
            return Verdict(decision, headers, None, True)
        return _verdict(decision, headers)


def _encoded(headers: Iterable[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)


def _verdict(decision: RateLimitDecision, headers: tuple[tuple[bytes, bytes], ...]) -> Verdict:
    if decision.allowed:
        return Verdict(decision, headers, None, True)
    text = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
    return Verdict(decision, headers, refusal(decision, text), True)


def refusal(decision: RateLimitDecision, headers: tuple[tuple[str, str], ...]) -> HTTPError:
    """The response to a refused request.

    A 429 with ``Retry-After`` (whole seconds, rounded up, at least 1): the time until every
    refusing rule admits this request, never earlier than the ``t`` of a ``RateLimit`` member
    with no quota left. A request whose cost exceeds the rule's ``max + burst`` can never be
    admitted: :data:`NEVER_ADMITTED_STATUS` with type :data:`NEVER_ADMITTED_TYPE`, no
    ``Retry-After``.
    """
    if math.isinf(decision.retry_after):
        return HTTPError(
            NEVER_ADMITTED_STATUS,
            NEVER_ADMITTED_TYPE,
            f"This request costs more than the {decision.policy!r} limit allows "
            f"({decision.limit} per window); it can never be admitted.",
            headers=headers,
            extra={"policy": decision.policy, "limit": decision.limit},
        )
    wait = retry_after_seconds(decision.retry_after)
    return HTTPError(
        429,
        "rate_limited",
        f"Rate limit {decision.policy!r} exceeded; retry after {wait} s.",
        headers=(("retry-after", str(wait)), *headers),
        extra={"policy": decision.policy, "limit": decision.limit, "retry_after": wait},
    )
