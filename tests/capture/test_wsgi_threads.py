"""The WSGI shell and plain threads: a WSGI app (CostMeterMiddleware) calling the sync openai
SDK, served concurrently from a thread pool; each user is charged exactly their own calls."""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from capture_kit import PRICES, expected_nanos
from provider_server import Provider
from werkzeug.test import Client

from agenthood_mw import Identity, MemoryScope, current_meter
from agenthood_mw.capture.httpx2 import MeteredTransport
from agenthood_mw.metering import Metering
from agenthood_mw.wsgi import CostMeterMiddleware

openai = pytest.importorskip("openai")


def test_wsgi_app_in_threads_charges_each_user_exactly(fresh: Provider) -> None:
    sdk = openai.OpenAI(
        api_key="k",
        base_url=fresh.url + "/v1",
        http_client=httpx2.Client(transport=MeteredTransport()),
    )

    def view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        user = environ["HTTP_X_TEST_USER"]
        n = int(environ["HTTP_X_N"])
        sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=n,
            extra_headers={"x-user": user},
        )
        body = json.dumps({"cost_nanos": current_meter().totals.cost_nanos}).encode()
        start_response("200 OK", [("content-type", "application/json")])
        return [body]

    metering = Metering(prices=PRICES)
    metered = CostMeterMiddleware(view, metering=metering)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["agenthood.identity"] = Identity(user_id=environ["HTTP_X_TEST_USER"])
        return metered(environ, start_response)

    def one(i: int) -> int:
        r = Client(app).get("/", headers={"x-test-user": f"w{i % 12}", "x-n": str(1 + i % 17)})
        assert r.status_code == 200, r.text
        return int(r.get_json()["cost_nanos"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        costs = list(pool.map(one, range(60)))
    metering.flush()
    want: dict[str, int] = defaultdict(int)
    for hit in fresh.hits():
        assert hit.user is not None
        want[hit.user] += expected_nanos("gpt-4o-mini", [hit])
    assert len(want) == 12
    for user, nanos in want.items():
        spent = metering.ledger.spend_between(
            "user", MemoryScope.operator(user=user).storage_key, 0.0, float("inf")
        )
        assert spent == nanos, user
    assert sum(costs) == sum(want.values())
    metering.close()
