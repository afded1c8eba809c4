"""A malformed storage URL fails at construction naming ``storage``, never on every request."""

from __future__ import annotations

from typing import Any

import pytest

from agenthood_mw.ratelimit import RateLimiter, RateLimitMiddleware
from agenthood_mw.wsgi import RateLimitMiddleware as WSGIRateLimitMiddleware

BAD_URLS = [
    "redis://127.0.0.1:notaport/0",
    "redis://127.0.0.1:99999/0",
    "rediss://127.0.0.1:6379/0?socket_timeout=soon",
    "redis+sentinel://127.0.0.1:notaport/mymaster",
    "redis+cluster://127.0.0.1:7000,127.0.0.1:x",
]


async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
    raise AssertionError


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:  # pragma: no cover
    raise AssertionError


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("strategy", ["gcra", "fixed-window"])
def test_bad_storage_url_is_refused_at_construction(url: str, strategy: str) -> None:
    with pytest.raises(ValueError, match=r"^storage: "):
        RateLimitMiddleware(app, max=10, storage=url, strategy=strategy)
    with pytest.raises(ValueError, match=r"^storage: "):
        WSGIRateLimitMiddleware(wsgi_app, max=10, storage=url, strategy=strategy)
    with pytest.raises(ValueError, match=r"^storage: "):
        RateLimiter(window="1m", max=10, storage=url, strategy=strategy)


def test_the_message_does_not_repeat_the_password() -> None:
    with pytest.raises(ValueError, match="storage: ") as info:
        RateLimiter(window="1m", max=1, storage="redis://user:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(info.value)
    assert "notaport" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@127.0.0.1:6380",
        "redis+unix:///tmp/redis.sock",
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
    ],
)
def test_well_formed_urls_are_accepted_without_connecting(url: str) -> None:
    limiter = RateLimiter(window="1m", max=1, storage=url)
    limiter.close()
