"""Sans-I/O policy: validation, keys, client addresses, headers."""

from __future__ import annotations

import pytest

from agenthood_mw import Identity
from agenthood_mw._core.ratelimit import (
    ClientAddress,
    Planner,
    RateLimitDecision,
    decision_headers,
    identity_key,
    retry_after_seconds,
)
from agenthood_mw.ratelimit import RateLimiter, RateLimitMiddleware, RateLimitRule

from .helpers import parse_ratelimit


async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
    pass


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max": 0}, "max"),
        ({"max": 20, "burst": -1}, "burst"),
        ({"max": 20, "window": "1 fortnight"}, "window"),
        ({"max": 20, "window": "5y"}, "window"),
        ({"max": 20, "storage": "memcached://localhost"}, "storage"),
        ({"max": 20, "storage": "localhost:6379"}, "storage"),
        ({"max": 20, "strategy": "leaky"}, "strategy"),
        ({"max": 20, "strategy": "fixed-window", "window": "1.5s"}, "window"),
        ({"max": 20, "trusted_proxies": ["not-an-ip"]}, "trusted_proxies"),
        ({"max": 20, "exempt_paths": ["health"]}, "exempt_paths"),
        ({"max": 20, "key": "user"}, "key"),
        ({"max": 20, "cost": 3}, "cost"),
        ({"max": 20, "fail_open": "yes"}, "fail_open"),
        ({"max": 20, "key_prefix": "app:{x}:"}, "key_prefix"),
        ({"max": 20, "max_keys": 0}, "max_keys"),
        ({"max": 20, "clock": lambda: 0.0, "storage": "redis://localhost"}, "clock"),
        ({}, "max"),
        ({"max": 20, "rules": [RateLimitRule(max=1, name="default")]}, "rules"),
    ],
)
def test_invalid_options_fail_at_construction(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises((ValueError, TypeError), match=option):
        RateLimitMiddleware(app, **kwargs)  # type: ignore[arg-type]


def test_window_forms() -> None:
    for window, seconds in (("30s", 30), ("1m", 60), ("1h", 3600), ("1d", 86400), (90, 90)):
        assert RateLimiter(window=window, max=1).policy.window == seconds


def test_identity_keys_are_per_tenant_and_unforgeable() -> None:
    a = identity_key(Identity(user_id="alice"))
    b = identity_key(Identity(user_id="alice", tenant="acme"))
    c = identity_key(Identity(user_id="acme:alice"))
    d = identity_key(Identity(user_id="alice|x"))
    assert len({a, b, c, d}) == 4
    assert all(k and "|" not in k and "{" not in k for k in (a, b, c, d))
    assert identity_key(Identity.anonymous()) is None
    assert identity_key(None) is None


def test_forwarded_for_is_only_trusted_from_configured_proxies() -> None:
    plain = ClientAddress()
    assert plain.resolve("10.0.0.1", ["1.2.3.4"]) == "10.0.0.1"
    proxies = ClientAddress(["10.0.0.0/8", "::1"])
    assert proxies.resolve("10.0.0.1", ["1.2.3.4"]) == "1.2.3.4"
    # A client-supplied entry on the left cannot pick the key: the right-most untrusted wins.
    assert proxies.resolve("10.0.0.1", ["6.6.6.6, 1.2.3.4, 10.0.0.7"]) == "1.2.3.4"
    assert proxies.resolve("192.0.2.9", ["1.2.3.4"]) == "192.0.2.9"  # peer not trusted
    assert proxies.resolve("10.0.0.1", ["garbage"]) == "10.0.0.1"
    assert proxies.resolve("::1", ["2001:db8::1"]) == "2001:db8::1"
    assert proxies.resolve("10.0.0.1", []) == "10.0.0.1"


def test_retry_after_rounds_up_to_whole_seconds_at_least_one() -> None:
    assert retry_after_seconds(0.0001) == 1
    assert retry_after_seconds(1.0) == 1
    assert retry_after_seconds(1.2) == 2
    assert retry_after_seconds(59.99) == 60


def test_headers_are_ietf_structured_fields() -> None:
    d1 = RateLimitDecision(True, 25, 7, 41.2, 0.0, "default")
    d2 = RateLimitDecision(True, 5, 2, 3.5, 0.0, "agents-run")
    headers = dict(decision_headers([d1, d2], '"default";q=25;w=60', legacy=True))
    assert parse_ratelimit(headers["ratelimit"]) == {
        "default": {"r": 7, "t": 42},
        "agents-run": {"r": 2, "t": 4},
    }
    assert parse_ratelimit(headers["ratelimit-policy"]) == {"default": {"q": 25, "w": 60}}
    assert headers["x-ratelimit-limit"] == "5"
    assert headers["x-ratelimit-remaining"] == "2"
    assert headers["x-ratelimit-reset"] == "4"


def test_rules_match_paths_and_methods() -> None:
    planner = Planner(
        window="1m",
        max=20,
        burst=5,
        rules=[RateLimitRule(window="1m", max=2, path="/agents/{name}/run", methods=["POST"])],
        headers=True,
        legacy_headers=False,
    )
    assert [s for _, s in planner.match("POST", "/agents/dev/run")] == [
        "default",
        "agents-name-run:dev",
    ]
    assert [s for _, s in planner.match("GET", "/agents/dev/run")] == ["default"]
    assert [s for _, s in planner.match("POST", "/agents/a%7Cb/run")] == [
        "default",
        "agents-name-run:a%257Cb",
    ]


@pytest.mark.parametrize(
    "storage",
    [
        "memory://",
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@cache.example:6380/1",
        "redis+unix:///var/run/redis.sock",
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
    ],
)
def test_storage_schemes_construct_without_connecting(storage: str) -> None:
    mw = RateLimitMiddleware(app, max=20, burst=5, storage=storage)
    assert mw.storage_failures == 0


def test_unknown_storage_message_does_not_leak_credentials() -> None:
    with pytest.raises(ValueError, match="storage") as info:
        RateLimitMiddleware(app, max=1, storage="mongodb://admin:hunter2@db:27017")
    assert "hunter2" not in str(info.value)


def test_path_templates() -> None:
    from agenthood_mw._core.ratelimit import compile_template

    regex, names = compile_template("/agents/{name}/run")
    assert names == ("name",)
    assert regex.match("/agents/dev/run")
    assert not regex.match("/agents/dev/x/run")
    assert not regex.match("/agents/dev/run/extra")
    regex, _ = compile_template("/files/{rest:path}")
    assert regex.match("/files/a/b/c")
    regex, _ = compile_template("/v1.0/{n:int}")
    assert regex.match("/v1.0/42") and not regex.match("/v1x0/42") and not regex.match("/v1.0/a")
    for bad in ("/a/{name", "/a/{x}/{x}", "/a/{x:float}"):
        with pytest.raises(ValueError, match="path"):
            RateLimitRule(max=1, path=bad)
