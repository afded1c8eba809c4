"""The incremental reader does not depend on where the network splits the bytes: any split of
an SSE stream or a (gzipped) JSON body gives the same charge as the body in one piece."""

from __future__ import annotations

import gzip
import json

from capture_kit import PRICES
from hypothesis import given, settings
from hypothesis import strategies as st

from agenthood_mw import MemoryScope
from agenthood_mw.capture._call import open_call
from agenthood_mw.metering import Meter, reset_meter, set_meter


def _sse(events: list[object]) -> bytes:
    """SSE with CRLF line ends for the JSON events (servers may use either) and LF for [DONE]."""
    out = b""
    for event in events:
        if isinstance(event, str):
            out += f"data: {event}\n\n".encode()
        else:
            out += f"event: x\r\ndata: {json.dumps(event)}\r\n\r\n".encode()
    return out


CHAT = _sse(
    [
        *(
            {"choices": [{"delta": {"content": "x"}}], "usage": None, "model": "gpt-4o-mini"}
            for _ in range(7)
        ),
        {
            "choices": [],
            "model": "gpt-4o-mini",
            "usage": {
                "prompt_tokens": 40,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 8},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        },
        "[DONE]",
    ]
)
MESSAGES = _sse(
    [
        {
            "type": "message_start",
            "message": {
                "model": "claude-haiku",
                "usage": {
                    "input_tokens": 5,
                    "output_tokens": 1,
                    "cache_read_input_tokens": 30,
                    "cache_creation_input_tokens": 11,
                },
            },
        },
        *({"type": "content_block_delta", "delta": {"text": "y"}} for _ in range(6)),
        {"type": "message_delta", "usage": {"output_tokens": 6}},
        {"type": "message_stop"},
    ]
)
BODY = gzip.compress(
    json.dumps(
        {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 9, "completion_tokens": 3}}
    ).encode()
)
CASES = {
    "/v1/chat/completions": (CHAT, "text/event-stream", ""),
    "/v1/messages": (MESSAGES, "text/event-stream", ""),
    "/v1/embeddings": (BODY, "application/json", "gzip"),
}


def _charge(path: str, cuts: list[int]) -> tuple[int, ...]:
    body, content_type, encoding = CASES[path]
    meter = Meter(prices=PRICES, scope=MemoryScope.operator(user="u"))
    token = set_meter(meter)
    try:
        call = open_call("POST", path, b'{"model": "gpt-4o-mini"}')
    finally:
        reset_meter(token)
    assert call is not None and call.watch(200, content_type, encoding)
    points = sorted({c % (len(body) + 1) for c in cuts})
    start = 0
    for point in [*points, len(body)]:
        call.feed(body[start:point])
        start = point
    call.finish()
    return tuple(meter.totals)


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(sorted(CASES)), cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_any_split_charges_what_one_piece_charges(path: str, cuts: list[int]) -> None:
    whole = _charge(path, [])
    assert whole[5] == 1  # one model call, exact usage
    assert _charge(path, cuts) == whole
