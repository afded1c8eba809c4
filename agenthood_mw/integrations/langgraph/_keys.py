"""Reversible mapping of LangGraph ``(namespace, key)`` pairs onto memory keys (pure functions).

Each namespace segment is percent-encoded (``quote(segment, safe="")``: only ``A-Z a-z 0-9 - . _ ~``
stay literal) and followed by ``/``; the item key, percent-encoded the same way, follows a ``:``.
Neither ``/`` nor ``:`` can occur inside an encoded segment, so ``("a", "bc")`` and ``("ab", "c")``
are different keys, and the memory-key prefix of a namespace prefix ``("acme",)`` is ``acme/``,
which ``("acme-corp",)`` (``acme-corp/``) does not start with. Decoding accepts only the
canonical encoding, so a stored key decodes to exactly one pair.
"""

from __future__ import annotations

import functools
import re
from typing import Final
from urllib.parse import quote, unquote

__all__ = ["ROOT", "decode", "encode", "namespace_prefix"]

#: Every key of the store starts with this, apart from the app's own facts in the same scope.
ROOT: Final = "langgraph/"
_LITERAL: Final = re.compile(r"[A-Za-z0-9._~-]*")


def _seg(text: str) -> str:
    return quote(text, safe="")


def namespace_prefix(namespace: tuple[str, ...]) -> str:
    """The memory-key prefix shared by every item of ``namespace`` and its sub-namespaces."""
    return ROOT + "".join(_seg(s) + "/" for s in namespace)


def encode(namespace: tuple[str, ...], key: str) -> str:
    """The memory key of item ``key`` in ``namespace``."""
    return namespace_prefix(namespace) + ":" + _seg(key)


def _canonical(part: str) -> str | None:
    if _LITERAL.fullmatch(part):  # nothing escaped: the text is itself
        return part
    try:
        text = unquote(part, errors="strict")
    except UnicodeDecodeError:
        return None
    return text if _seg(text) == part else None


@functools.lru_cache(maxsize=65_536)
def decode(memory_key: str) -> tuple[tuple[str, ...], str] | None:
    """The ``(namespace, key)`` of a memory key, or ``None`` if it is not a canonical store key."""
    if not memory_key.startswith(ROOT):
        return None
    head, sep, tail = memory_key[len(ROOT) :].partition(":")
    if not sep or not head.endswith("/"):
        return None
    parts = head[:-1].split("/")
    namespace: list[str] = []
    for part in parts:
        seg = _canonical(part)
        if not seg:
            return None
        namespace.append(seg)
    key = _canonical(tail)
    if key is None:
        return None
    return tuple(namespace), key
