"""Fixtures of the auth tests; helpers live in ``auth_support.py`` (put on ``sys.path`` here)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from auth_support import AUDIENCE, SECRET, SHELLS, Client


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(shell: str) -> Callable[..., Client]:
    def factory(**options: Any) -> Client:
        options.setdefault("strategy", "jwt")
        strategies = options["strategy"]
        if not isinstance(strategies, list):
            strategies = [strategies]
        if "jwt" in strategies and not {"public_key", "jwks_url"} & options.keys():
            options.setdefault("secret", SECRET)
            options.setdefault("audience", AUDIENCE)
        return Client(shell, options)

    return factory
