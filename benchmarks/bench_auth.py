"""AuthMiddleware cost: bare route vs. auth with a repeated HS256 token (verified-token cache),
and the uncached verification cost per algorithm (HS256, RS256, ES256).

Run: ``.venv/bin/python benchmarks/bench_auth.py``
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from _harness import bench, http_scope, print_table, trivial_app
from starlette.types import Scope

from agenthood_mw.auth import AuthMiddleware, mint_token
from agenthood_mw.testing._tokens import generate_keypair

SECRET = "bench-secret-" + "x" * 40
AUDIENCE = "agenthood-api"


def _auth_scope(token: str) -> Scope:
    return http_scope("/agents/dev/run", headers=[(b"authorization", f"Bearer {token}".encode())])


def _uncached(
    algorithm: str, key: object, signing_key: object
) -> tuple[object, Callable[[int], Scope]]:
    """A middleware with the cache disabled, fed a rotating pool of distinct valid tokens."""
    app = AuthMiddleware(
        trivial_app(),
        strategy="jwt",
        audience=AUDIENCE,
        algorithms=[algorithm],
        cache_size=0,
        **({"secret": key} if algorithm.startswith("HS") else {"public_key": key}),
    )
    pool = [
        _auth_scope(
            mint_token(
                secret=signing_key, user_id=f"usr_{i}", algorithm=algorithm, scopes=["agents:run"]
            )
        )
        for i in range(64)
    ]
    cycle = itertools.cycle(pool)
    return app, lambda i: next(cycle)


def main() -> None:
    bare = trivial_app()
    bare_scope = http_scope("/agents/dev/run")
    cached = AuthMiddleware(trivial_app(), strategy="jwt", secret=SECRET, audience=AUDIENCE)
    token_scope = _auth_scope(mint_token(secret=SECRET, user_id="usr_8f3a", scopes=["agents:run"]))
    print("== cached (repeated HS256 token)")
    print_table(
        bench(
            {
                "bare": (bare, lambda i: bare_scope),
                "auth, repeated HS256 token": (cached, lambda i: token_scope),
            }
        )
    )
    rsa_private, rsa_public = generate_keypair("RS256")
    ec_private, ec_public = generate_keypair("ES256")
    variants = {"bare": (bare, lambda i: bare_scope)}
    for name, alg, key, signing in (
        ("auth uncached HS256", "HS256", SECRET, SECRET),
        ("auth uncached RS256", "RS256", rsa_public, rsa_private),
        ("auth uncached ES256", "ES256", ec_public, ec_private),
    ):
        variants[name] = _uncached(alg, key, signing)  # type: ignore[assignment]
    print("\n== uncached verification per algorithm (cache_size=0)")
    print_table(bench(variants, requests_per_round=500, rounds=9, warmup=200))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
