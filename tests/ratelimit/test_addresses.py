"""Anonymous callers are keyed by their normalised address (issue 11 #7): every spelling of one
address is one client, an IPv6 client is its ``/ipv6_prefix`` network (/64 by default), and an
IPv4-mapped IPv6 address is the IPv4 address."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask

from agenthood_mw._core.ratelimit import ClientAddress, normalise_address
from agenthood_mw.ratelimit import RateLimitMiddleware, WSGIRateLimitMiddleware

from .helpers import Clock

#: Nine spellings of 2001:db8::1.
SPELLINGS = [
    "2001:db8::1",
    "2001:DB8::1",
    "2001:0db8:0000:0000:0000:0000:0000:0001",
    "2001:db8:0:0:0:0:0:1",
    "2001:db8::0:1",
    "[2001:db8::1]",
    "[2001:db8::1]:8443",
    " 2001:db8::1 ",
    "2001:db8::1%eth0",
]
PROXY = "10.0.0.1"


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def asgi_statuses(app: Any, peer: str, forwarded: list[str | None]) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=(peer, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        out = []
        for value in forwarded:
            headers = {} if value is None else {"x-forwarded-for": value}
            out.append((await c.get("/", headers=headers)).status_code)
    return out


async def test_nine_spellings_of_one_ipv6_address_share_one_bucket() -> None:
    app = RateLimitMiddleware(ok, max=5, trusted_proxies=[PROXY], clock=Clock())
    statuses = await asgi_statuses(app, PROXY, [s for s in SPELLINGS for _ in range(5)])
    assert statuses.count(200) == 5  # not 45
    assert len(statuses) == 45


def test_nine_spellings_share_one_bucket_in_the_wsgi_shell() -> None:
    flask = Flask(__name__)
    flask.add_url_rule("/", "index", lambda: "ok")
    flask.wsgi_app = WSGIRateLimitMiddleware(  # type: ignore[method-assign]
        flask.wsgi_app, max=5, trusted_proxies=[PROXY], clock=Clock()
    )
    c = flask.test_client()
    statuses = [
        c.get("/", environ_base={"REMOTE_ADDR": PROXY}, headers={"X-Forwarded-For": s}).status_code
        for s in SPELLINGS
        for _ in range(5)
    ]
    assert statuses.count(200) == 5


async def test_ipv4_mapped_ipv6_is_the_ipv4_address() -> None:
    app = RateLimitMiddleware(ok, max=2, trusted_proxies=[PROXY], clock=Clock())
    spellings = ["::ffff:8.8.4.4", "8.8.4.4", "::FFFF:0808:0404", "8.8.4.4:1234"]
    assert (await asgi_statuses(app, PROXY, spellings)).count(200) == 2
    # The peer address itself is normalised too (no proxy involved).
    direct = RateLimitMiddleware(ok, max=2, clock=Clock())
    assert (await asgi_statuses(direct, "::ffff:8.8.4.4", [None] * 2)) == [200, 200]
    assert (await asgi_statuses(direct, "8.8.4.4", [None])) == [429]


async def test_ipv6_clients_are_grouped_by_prefix() -> None:
    same_64 = ["2001:db8:0:1::1", "2001:db8:0:1:ffff::2", "2001:db8:0:1:a:b:c:d"]
    app = RateLimitMiddleware(ok, max=3, trusted_proxies=[PROXY], clock=Clock())
    assert await asgi_statuses(app, PROXY, [*same_64, "2001:db8:0:1::9"]) == [200] * 3 + [429]
    assert await asgi_statuses(app, PROXY, ["2001:db8:0:2::1"]) == [200]  # another /64
    narrow = RateLimitMiddleware(ok, max=1, ipv6_prefix=128, trusted_proxies=[PROXY])
    assert await asgi_statuses(narrow, PROXY, same_64) == [200] * 3
    wide = RateLimitMiddleware(ok, max=1, ipv6_prefix=48, trusted_proxies=[PROXY])
    assert await asgi_statuses(wide, PROXY, [same_64[0], "2001:db8:0:2::1"]) == [200, 429]


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (129, ValueError), (-1, ValueError), ("64", TypeError), (True, TypeError)],
)
def test_ipv6_prefix_is_validated_at_construction(value: object, error: type) -> None:
    for cls in (RateLimitMiddleware, WSGIRateLimitMiddleware):
        with pytest.raises(error, match="ipv6_prefix"):
            cls(ok, max=1, ipv6_prefix=value)  # type: ignore[arg-type]


def test_normalise_address() -> None:
    assert {normalise_address(s) for s in SPELLINGS} == {"2001:db8::1"}
    assert {normalise_address(s, ipv6_prefix=64) for s in SPELLINGS} == {"2001:db8::/64"}
    assert normalise_address("::ffff:8.8.4.4", ipv6_prefix=64) == "8.8.4.4"
    assert normalise_address(" 8.8.4.4 ") == "8.8.4.4"
    assert normalise_address("testclient") == "testclient"  # not an address: kept as is
    # The resolver walks X-Forwarded-For over trusted proxies whatever their spelling.
    proxies = ClientAddress(["10.0.0.0/8", "2001:db8:ffff::/48"], ipv6_prefix=64)
    assert proxies.resolve("::ffff:10.0.0.1", ["2001:DB8:1::5, [2001:db8:ffff::1]"]) == (
        "2001:db8:1::/64"
    )
