"""Fixtures of the capture tests: a fake provider server on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from provider_server import Provider, running_provider


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as p:
        yield p


@pytest.fixture
def fresh(provider: Provider) -> Provider:
    with provider.lock:
        provider.log.clear()
    return provider
