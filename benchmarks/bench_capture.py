"""Capture overhead: a metered transport against the bare one, per call and per stream chunk.

Run::

    python benchmarks/bench_capture.py

Both sides run the same code over an in-process ``httpx2.MockTransport`` answering canned
OpenAI bodies (still to be read, as from the network), so the figure is the capture's own cost,
not the network's (a local server adds far more jitter per call than the quantity measured).
Rounds alternate bare / metered; the best round of each side is printed.

- per call, at the transport: ``handle_request`` + reading the JSON body, bare vs metered with a
  meter bound (the metered side includes ``Meter.record``: pricing and the usage event);
- per call, through the SDK: ``openai.OpenAI().chat.completions.create`` (non-streamed; the
  SDK's own ~700 us make this figure noisy);
- per chunk: an ``httpx2`` client reading a 2 000-chunk SSE chat stream (one event per chunk,
  the final one with usage), bare vs metered, divided by the chunk count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx2
import openai

from agenthood_mw import MemoryScope
from agenthood_mw.capture.httpx2 import MeteredTransport
from agenthood_mw.metering import Meter, PriceTable, reset_meter, set_meter

PRICES = PriceTable({"gpt-4o-mini": {"input": "0.15", "output": "0.60"}})
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
BODY = json.dumps(
    {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()
CHUNKS = 2000
CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"x "},"finish_reason":null}],"usage":null}\n\n'
)
LAST = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
LAST += b'"choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\ndata: [DONE]\n\n"


def _handler(request: httpx2.Request) -> httpx2.Response:
    if json.loads(request.content).get("stream"):

        def chunks() -> Iterator[bytes]:
            for _ in range(CHUNKS):
                yield CHUNK
            yield LAST

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())
    # A body still to be read, as from the network (not a pre-read ``ByteStream``).
    return httpx2.Response(200, headers={"content-type": "application/json"}, content=iter([BODY]))


def _rounds(
    bare: Callable[[], float], metered: Callable[[], float], rounds: int = 15
) -> tuple[float, float]:
    """Alternating rounds; the best round of each side (the least disturbed by other jobs on
    this shared machine: medians moved by +-100 us between runs at the SDK level)."""
    b, m = [], []
    for _ in range(rounds):
        b.append(bare())
        m.append(metered())
    return min(b), min(m)


def _per_transport_call(transport: httpx2.BaseTransport, n: int = 2000) -> float:
    meter = Meter(prices=PRICES, scope=MemoryScope.operator(user="bench"))
    token = set_meter(meter)
    request = httpx2.Request(
        "POST",
        "http://p/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    try:
        start = time.perf_counter()
        for _ in range(n):
            response = transport.handle_request(request)
            response.read()
            response.close()
        return (time.perf_counter() - start) / n
    finally:
        reset_meter(token)


def _per_call(client: openai.OpenAI, n: int = 1500) -> float:
    meter = Meter(prices=PRICES, scope=MemoryScope.operator(user="bench"))
    token = set_meter(meter)
    try:
        start = time.perf_counter()
        for _ in range(n):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        return (time.perf_counter() - start) / n
    finally:
        reset_meter(token)


def _per_stream(client: httpx2.Client, n: int = 20) -> float:
    meter = Meter(prices=PRICES, scope=MemoryScope.operator(user="bench"))
    token = set_meter(meter)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": []}
    try:
        start = time.perf_counter()
        for _ in range(n):
            with client.stream("POST", "http://p/v1/chat/completions", json=body) as r:
                for _ in r.iter_bytes():
                    pass
        elapsed = (time.perf_counter() - start) / n
    finally:
        reset_meter(token)
    assert meter.totals.output_tokens in (0, 5 * n)  # 0 on the bare side
    return elapsed / CHUNKS


def main() -> None:
    mock = httpx2.MockTransport(_handler)
    sdk = {
        name: openai.OpenAI(
            api_key="k", base_url="http://p/v1", http_client=httpx2.Client(transport=t)
        )
        for name, t in (("bare", mock), ("metered", MeteredTransport(mock)))
    }
    raw = {
        "bare": httpx2.Client(transport=mock),
        "metered": httpx2.Client(transport=MeteredTransport(mock)),
    }
    for _ in range(2):  # warm-up
        _per_call(sdk["bare"], 200)
        _per_call(sdk["metered"], 200)
    b, m = _rounds(
        lambda: _per_transport_call(mock), lambda: _per_transport_call(MeteredTransport(mock))
    )
    print(
        f"transport call + body read: bare {b * 1e6:.1f} us, metered {m * 1e6:.1f} us, "
        f"overhead {(m - b) * 1e6:.1f} us per call"
    )
    b, m = _rounds(lambda: _per_call(sdk["bare"], 500), lambda: _per_call(sdk["metered"], 500))
    print(
        f"non-streamed SDK call: bare {b * 1e6:.1f} us, metered {m * 1e6:.1f} us, "
        f"overhead {(m - b) * 1e6:.1f} us per call"
    )
    b, m = _rounds(lambda: _per_stream(raw["bare"]), lambda: _per_stream(raw["metered"]))
    print(
        f"streamed chunk: bare {b * 1e6:.3f} us, metered {m * 1e6:.3f} us, "
        f"overhead {(m - b) * 1e6:.3f} us per chunk"
    )


if __name__ == "__main__":
    main()
