"""The package's import structure: no import circle, no reach into another folder's privates.

DESIGN.md: "No import circles, and no module imports another folder's ``_private`` module or
name (import from its package face instead)." This test parses every module of the package with
:mod:`ast` (lazy imports inside functions included) and fails on either. ``_core`` and the
top-level private modules (``_asgi``, ``_wsgi``, ``_errors``, ``_identity``, ``_context`` ...)
are the shared internals every folder may use; the top-level faces (``__init__``, ``wsgi``,
``cli``) may re-export from any folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import agenthood_mw

ROOT = Path(agenthood_mw.__file__).resolve().parent
PKG = ROOT.name


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _absolute(current: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


_MODS = _modules()
_PACKAGES = {m + ".x" for m, p in _MODS.items() if p.name == "__init__.py"}


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, imported names)`` for every import statement of the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path.name == "__init__.py", node.level, node.module)
            found.append((base, [alias.name for alias in node.names]))
    return [(base, names) for base, names in found if base.split(".")[0] == PKG]


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in _MODS}
    for module, path in _MODS.items():
        for base, names in _imports(module, path):
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in _MODS]
            for target in targets or ([base] if base in _MODS else []):
                if target != module:
                    edges[module].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _cross_private() -> list[str]:
    found = []
    for module, path in _MODS.items():
        if path.parent == ROOT:  # top-level faces and shared internals
            continue
        here = module.split(".")[1]
        for base, names in _imports(module, path):
            parts = base.split(".")
            if (
                len(parts) < 2
                or parts[1] in (here, "_core")
                or f"{PKG}.{parts[1]}.x" not in _PACKAGES
            ):
                continue
            private = [n for n in names if _is_private(n)]
            if any(_is_private(p) for p in parts[2:]) or private:
                found.append(f"{module} -> {base} {private}")
    return found


def test_the_scanner_sees_the_whole_package() -> None:
    assert len(_MODS) > 50
    assert f"{PKG}.auth" in _MODS and f"{PKG}.metering._meter" in _MODS
    edges = _graph()
    assert f"{PKG}._core.scope" in edges[f"{PKG}.memory._base"]


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_no_module_reaches_into_another_folders_private_names() -> None:
    assert _cross_private() == []
