"""``mint_token`` refuses an HMAC secret that ``AuthMiddleware`` would refuse."""

from __future__ import annotations

import pytest

from agenthood_mw.auth import AuthMiddleware, mint_token


async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
    raise AssertionError


@pytest.mark.parametrize(("algorithm", "needed"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_short_hmac_secret_is_refused_like_the_middleware(algorithm: str, needed: int) -> None:
    short = "s" * (needed - 1)
    with pytest.raises(ValueError, match=rf"^secret: too short for {algorithm}.*{needed}"):
        mint_token(secret=short, user_id="alice", algorithm=algorithm)
    with pytest.raises(ValueError, match=r"^secret: too short"):
        AuthMiddleware(app, secret=short, algorithms=[algorithm])
    # exactly long enough: minted and accepted by a middleware built with it
    token = mint_token(secret="s" * needed, user_id="alice", algorithm=algorithm)
    assert token.count(".") == 2
    AuthMiddleware(app, secret="s" * needed, algorithms=[algorithm])


def test_secret_of_the_wrong_type_names_the_option() -> None:
    with pytest.raises(TypeError, match=r"^secret: "):
        mint_token(secret=12345, user_id="alice")
