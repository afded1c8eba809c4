"""``memory_from_url``: pick and configure a backend from one URL string."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from agenthood_mw._core.urls import redact
from agenthood_mw.memory._base import MemoryBackend

__all__ = ["memory_from_url"]


def memory_from_url(url: str, **options: Any) -> MemoryBackend:
    """Build a backend from a URL; ``options`` are passed to its constructor.

    - ``memory://`` -> :class:`InMemoryBackend`
    - ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` -> :class:`SQLiteBackend`
    - ``redis://...``, ``rediss://...`` -> ``RedisBackend`` (extra ``[redis]``)
    - ``postgresql://...``, ``postgres://...`` -> ``PostgresBackend`` (extra ``[postgres]``)
    """
    if not isinstance(url, str):
        raise TypeError(f"url: expected a str, got {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "memory":
        if url.rstrip("/") != "memory:":
            raise ValueError(f"url: {url!r}: memory:// takes no host, path or query")
        from agenthood_mw.memory._inmemory import InMemoryBackend

        return InMemoryBackend(**options)
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///") or "?" in url or "#" in url:
            raise ValueError(
                f"url: {url!r}: use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = unquote(url[len("sqlite:///") :])
        if not path:
            raise ValueError(f"url: {url!r}: the sqlite URL names no database file")
        from agenthood_mw.memory._sqlite import SQLiteBackend

        return SQLiteBackend(path, **options)
    if scheme in ("redis", "rediss", "unix"):
        from agenthood_mw.memory.redis import RedisBackend

        return RedisBackend(url, **options)
    if scheme in ("postgresql", "postgres"):
        from agenthood_mw.memory.postgres import PostgresBackend

        return PostgresBackend(url, **options)
    raise ValueError(
        f"url: {redact(url)!r}: unsupported memory backend; use memory://, sqlite:///path.db, "
        "redis://... or postgresql://..."
    )
