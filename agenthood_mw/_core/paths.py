"""Matching of operator-configured paths (``exempt_paths``), decided once at construction."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PathSet"]


class PathSet:
    """A set of exact paths and ``prefix/*`` patterns, configured by the operator.

    ``"/health"`` matches exactly ``/health`` (and ``/health/``); ``"/static/*"`` matches
    ``/static`` and everything below it (segment-wise, so ``/staticfoo`` is not matched).
    Only operator configuration is ever used as a pattern; request paths are only looked up.
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
                base = path[:-2].rstrip("/")
                prefixes.append(base + "/")
                exact.add(base or "/")
            else:
                exact.add(path.rstrip("/") or "/")
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        if (path.rstrip("/") or "/") in self._exact:
            return True
        return any(path.startswith(p) for p in self._prefixes)
