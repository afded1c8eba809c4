"""Matching of operator-configured paths (``exempt_paths``), decided once at construction.

Shared by every layer (auth, rate limit, metering; ASGI and WSGI), so one rule holds
everywhere: a path matches exactly what is configured. The paths compared are relative to
the app's mount point (``root_path`` / ``SCRIPT_NAME`` removed).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PathSet"]


class PathSet:
    """A set of exact paths and ``prefix/*`` patterns, configured by the operator.

    ``"/health"`` matches ``/health`` and nothing else: not ``/health/``, ``/healthz`` nor
    ``/health/x`` (in Starlette, Flask and under a mount those are distinct routes; list each
    one to exempt). ``"/static/*"`` matches every path that starts with ``/static/``
    (``/static/``, ``/static/a/b``), not ``/static`` itself nor ``/staticfoo``. Only operator
    configuration is ever used as a pattern; request paths are only looked up.
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, paths: Iterable[str], *, option: str = "exempt_paths") -> None:
        if isinstance(paths, str):
            raise TypeError(f"{option}: expected a list of paths, not a single string")
        exact: set[str] = set()
        prefixes: list[str] = []
        for path in paths:
            if not isinstance(path, str) or not path.startswith("/"):
                raise ValueError(f"{option}: every path must be a string starting with '/'")
            if path.endswith("/*"):
                prefixes.append(path[:-1])
            else:
                exact.add(path)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        return path in self._exact or any(path.startswith(p) for p in self._prefixes)
