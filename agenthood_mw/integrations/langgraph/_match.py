"""Search helpers of :class:`ScopedStore` (pure functions): filters, namespace conditions,
vector packing and cosine similarity (numpy when installed, plain Python otherwise)."""

from __future__ import annotations

import base64
import importlib
import math
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "best_first",
    "cosine_scores",
    "matches_condition",
    "matches_filter",
    "normalised_rows",
    "pack_vector",
    "unpack_vector",
]


def _load_numpy() -> Any:
    """numpy if installed (an optional speed-up; plain Python gives the same scores)."""
    try:
        return importlib.import_module("numpy")
    except ImportError:  # pragma: no cover - numpy is installed with the test extra
        return None


_np: Any = _load_numpy()


def _compare(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, str | int | float | None):
        return bool(value == wanted)
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_operator(value, op, arg) for op, arg in wanted.items())
        return isinstance(value, dict) and all(_compare(value.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(wanted)
            and all(_compare(a, b) for a, b in zip(value, wanted, strict=True))
        )
    return bool(value == wanted)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op not in ("$gt", "$gte", "$lt", "$lte"):
        raise ValueError(f"unsupported filter operator {op!r}")
    a, b = _number(value), _number(arg)
    if a is None or b is None:
        return False
    if op == "$gt":
        return a > b
    if op == "$gte":
        return a >= b
    if op == "$lt":
        return a < b
    return a <= b


def matches_filter(value: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    """LangGraph's filter semantics: exact (nested) match, or ``$eq $ne $gt $gte $lt $lte``."""
    if not flt:
        return True
    return all(_compare(value.get(key), wanted) for key, wanted in flt.items())


def matches_condition(match_type: str, path: Sequence[str], namespace: tuple[str, ...]) -> bool:
    """A ``MatchCondition``: ``prefix`` or ``suffix`` of whole segments, ``"*"`` matches one."""
    if len(namespace) < len(path):
        return False
    if match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"unsupported match type {match_type!r}")
    return all(p == "*" or n == p for n, p in pairs)


def pack_vector(vector: Sequence[float]) -> str:
    """Base64 of the little-endian float32 values (compact, cheap to parse)."""
    arr = array("f", (float(x) for x in vector))
    if sys.byteorder == "big":  # pragma: no cover - little-endian CI
        arr.byteswap()
    return base64.b64encode(arr.tobytes()).decode("ascii")


def unpack_vector(text: str) -> Any:
    """The vector of :func:`pack_vector`: a numpy array if numpy is installed, else a list."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if _np is not None:
        return _np.frombuffer(raw, dtype="<f4")
    arr = array("f")
    arr.frombytes(raw)
    if sys.byteorder == "big":  # pragma: no cover
        arr.byteswap()
    return arr.tolist()


def cosine_scores(query: Sequence[float], vectors: Sequence[Any]) -> list[float]:
    """Cosine similarity of ``query`` with each vector (0.0 where a norm is zero)."""
    if not vectors:
        return []
    if _np is not None:
        q = _np.asarray(query, dtype=_np.float32)
        m = _np.vstack(vectors)
        norms = _np.linalg.norm(m, axis=1) * float(_np.linalg.norm(q))
        dots = m @ q
        out = _np.zeros(len(vectors), dtype=_np.float64)
        ok = norms > 0
        out[ok] = dots[ok] / norms[ok]
        return [float(x) for x in out]
    qn = math.sqrt(sum(x * x for x in query))
    scores = []
    for vec in vectors:
        vn = math.sqrt(sum(x * x for x in vec))
        dot = sum(a * b for a, b in zip(query, vec, strict=False))
        scores.append(dot / (qn * vn) if qn > 0 and vn > 0 else 0.0)
    return scores


def normalised_rows(vectors: Sequence[Any]) -> Any:
    """The vectors as unit rows (zero vectors stay zero): a float32 matrix, or lists."""
    if _np is not None:
        if not vectors:
            return _np.zeros((0, 0), dtype=_np.float32)
        m = _np.vstack(vectors).astype(_np.float32)
        norms = _np.linalg.norm(m, axis=1)
        norms[norms == 0] = 1.0
        return m / norms[:, None]
    rows = []
    for vec in vectors:
        n = math.sqrt(sum(x * x for x in vec)) or 1.0
        rows.append([x / n for x in vec])
    return rows


def best_first(rows: Any, query: Sequence[float], hint: int = 10) -> Iterator[tuple[float, int]]:
    """``(cosine, row index)`` of :func:`normalised_rows` output, highest first, lazily.

    With numpy, the best ``max(4 * hint, 64)`` rows are selected first (``argpartition``) and
    the rest sorted only if the caller reads further (filters may skip rows).
    """
    qn = math.sqrt(sum(float(x) * float(x) for x in query)) or 1.0
    if len(rows) == 0:
        return
    if _np is None:
        unit = [float(x) / qn for x in query]
        scored = [
            (sum(a * b for a, b in zip(unit, r, strict=False)), j) for j, r in enumerate(rows)
        ]
        scored.sort(key=lambda p: -p[0])
        yield from scored
        return
    scores = rows @ (_np.asarray(query, dtype=_np.float32) / qn)
    k = min(len(scores), max(4 * hint, 64))
    top = _np.argpartition(-scores, k - 1)[:k] if k < len(scores) else _np.arange(k)
    top = top[_np.argsort(-scores[top], kind="stable")]
    for j in top:
        yield float(scores[j]), int(j)
    if k < len(scores):
        rest_mask = _np.ones(len(scores), dtype=bool)
        rest_mask[top] = False
        rest = _np.flatnonzero(rest_mask)
        for j in rest[_np.argsort(-scores[rest], kind="stable")]:
            yield float(scores[j]), int(j)
