"""``RateLimit``'s ``t`` is "the number of seconds until additional quota is made available"
(draft-ietf-httpapi-ratelimit-headers, Reset Parameter), and a ``Retry-After`` sent with it
never references a point earlier than the ``t`` of an exhausted policy (issue 11 #21). Every
field is parsed with a real structured-field parser (``http-sfv``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from flask import Flask
from http_sfv import List
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthood_mw import Identity
from agenthood_mw.ratelimit import RateLimitEngine, RateLimitRule, WSGIRateLimitMiddleware

from .helpers import Clock
from .test_asgi import make_app

AGENT_RULE = RateLimitRule(window="1m", max=2, path="/agents/{name}/run", methods=["POST"])


def members(value: str) -> dict[str, dict[str, Any]]:
    """The ``RateLimit`` / ``RateLimit-Policy`` field as ``{policy: params}`` (RFC 9651)."""
    parsed = List()
    parsed.parse(value.encode("latin-1"))
    out = {}
    for item in parsed:
        assert isinstance(item.value, str)  # a policy name is an sf-string
        params = dict(item.params)
        assert all(isinstance(v, int) and v >= 0 for v in params.values())
        out[item.value] = params
    return out


def check_response(status: int, headers: Any) -> dict[str, dict[str, Any]]:
    """The invariants every response must hold; returns the ``RateLimit`` members."""
    fields = members(headers["ratelimit"])
    policies = members(headers["ratelimit-policy"])
    for name, m in fields.items():
        quota = policies[name]["q"]
        assert 0 <= m["r"] <= quota
        # t: 0 exactly when nothing more can be made available (the quota is full).
        assert (m["t"] == 0) is (m["r"] == quota), (name, m)
    if status == 429:
        wait = int(headers["retry-after"])
        exhausted = [m["t"] for m in fields.values() if m["r"] == 0]
        assert exhausted, fields  # a unit request is refused only by an exhausted policy
        # Retry-After is the t of the exhausted policy that frees last: never earlier.
        assert wait == max(exhausted)
    else:
        assert "retry-after" not in headers
    return fields


async def test_the_26th_request_answers_t_equal_to_retry_after() -> None:
    """window="1m", max=20, burst=5: the 26th request answered ``t=75`` with
    ``Retry-After: 60``; the window frees a unit at 60 s, so both are 60."""
    clock = Clock()
    app, _ = make_app(clock=clock)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        got = [await c.get("/", headers={"x-user": "alice"}) for _ in range(26)]
        for r in got:
            check_response(r.status_code, r.headers)
        assert [r.status_code for r in got] == [200] * 25 + [429]
        assert members(got[-1].headers["ratelimit"]) == {"default": {"r": 0, "t": 60}}
        assert got[-1].headers["retry-after"] == "60"
        clock.advance(59)
        assert (await c.get("/", headers={"x-user": "alice"})).status_code == 429
        clock.advance(1)  # t seconds after the refusal: more quota is available
        assert (await c.get("/", headers={"x-user": "alice"})).status_code == 200


def test_the_wsgi_shell_answers_the_same() -> None:
    flask = Flask(__name__)
    flask.add_url_rule("/", "index", lambda: "ok")
    flask.add_url_rule("/agents/<name>/run", "run", lambda name: "ok", methods=["POST"])
    clock = Clock()
    limited = WSGIRateLimitMiddleware(
        flask.wsgi_app, window="1m", max=20, burst=5, rules=[AGENT_RULE], clock=clock
    )
    c = flask.test_client()
    flask.wsgi_app = limited  # type: ignore[method-assign]
    got = [c.get("/") for _ in range(26)]
    for r in got:
        check_response(r.status_code, r.headers)
    assert members(got[-1].headers["ratelimit"])["default"] == {"r": 0, "t": 60}
    assert got[-1].headers["retry-after"] == "60"
    clock.advance(120)
    runs = [c.post("/agents/x/run") for _ in range(3)]
    for r in runs:
        check_response(r.status_code, r.headers)
    assert [r.status_code for r in runs] == [200, 200, 429]
    # The agent rule (2 per minute, no burst): its bucket refills one unit after 30 s, but its
    # window holds both runs until 60 s after them: more quota is available in 60 s.
    assert members(runs[-1].headers["ratelimit"])["agents-name-run"] == {"r": 0, "t": 60}
    assert runs[-1].headers["retry-after"] == "60"


@pytest.mark.redis
async def test_redis_storage_answers_the_same(redis_url: str, redis_prefix: str) -> None:
    app, mw = make_app(storage=redis_url, key_prefix=redis_prefix)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        got = [await c.get("/", headers={"x-user": "alice"}) for _ in range(26)]
    for r in got:
        check_response(r.status_code, r.headers)
    assert [r.status_code for r in got] == [200] * 25 + [429]
    assert members(got[-1].headers["ratelimit"])["default"]["t"] in (59, 60)
    await mw.aclose()


Step = tuple[float, str, int]  # (seconds waited, path, user)
steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.9, 3.0, 7.5, 29.0, 61.0]),
        st.sampled_from(["/", "/agents/a/run", "/agents/b/run"]),
        st.integers(0, 1),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(stream=steps)
def test_t_and_retry_after_hold_for_every_answer_with_several_rules(stream: list[Step]) -> None:
    """Any traffic over two rules: every answer holds the invariants, waiting ``t`` after an
    answer makes that policy's quota grow and waiting ``t - 1`` does not, and a refused
    request is admitted once ``Retry-After`` has passed."""
    clock = Clock()
    engine = RateLimitEngine(window="1m", max=5, burst=2, rules=[AGENT_RULE], clock=clock)
    users = [Identity(user_id="alice"), Identity(user_id="bob")]

    def ask(path: str, user: int) -> tuple[int, dict[str, str]]:
        verdict = engine.decide_sync(users[user], "POST", path)
        if verdict.error is None:
            return 200, {k.decode(): v.decode() for k, v in verdict.headers}
        error = verdict.error
        return error.status, dict(error.headers)

    for wait, path, user in stream:
        clock.advance(wait)
        status, headers = ask(path, user)
        fields = check_response(status, headers)
        if status == 429:
            clock.advance(int(headers["retry-after"]))
            assert ask(path, user)[0] == 200
            continue
        # Probe the tightest policy of this answer: its quota grows exactly after t seconds.
        name, m = min(fields.items(), key=lambda kv: (kv[1]["r"], kv[0]))
        if m["t"] >= 2 and name == "default" and path == "/":
            clock.advance(m["t"] - 1)
            status, headers = ask(path, user)
            if status == 200:
                assert members(headers["ratelimit"])[name]["r"] == m["r"] - 1
                clock.advance(1)
                status, headers = ask(path, user)
                assert status == 200
                assert members(headers["ratelimit"])[name]["r"] >= m["r"] - 1
