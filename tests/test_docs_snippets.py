"""Every ```python block of README.md and docs/*.md compiles; the self-contained ones run.

A block preceded by the line ``<!-- snippet: self-contained -->`` (invisible when rendered)
is executed as written, in an empty namespace, in a temporary directory, with the
environment variables the docs tell the reader to set. Top-level ``await`` is allowed (the
docs show async APIs that way). Other blocks are fragments (they use the reader's ``app``,
``request`` ...): they are compiled, their ``agenthood_mw`` imports are run (every extra is
installed here, so an import a reader copies must work as written), and their calls of library
names are bound to the real signatures. Calls shown inline in the prose are bound too (the
arguments they show must fit: no keyword-only option shown as positional).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- snippet: self-contained -->"
FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def _blocks() -> list[tuple[str, str, bool]]:
    """(``file:line``, source, self-contained) of every ```python block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```python":
                end = i + 1
                while end < len(lines) and lines[end].strip() != "```":
                    end += 1
                assert end < len(lines), f"{path.name}:{i + 1}: unterminated code block"
                marked = i > 0 and lines[i - 1].strip() == MARKER
                source = "\n".join(lines[i + 1 : end]) + "\n"
                found.append((f"{path.relative_to(ROOT)}:{i + 2}", source, marked))
                i = end
            i += 1
    return found


BLOCKS = _blocks()


def test_the_docs_have_runnable_snippets() -> None:
    assert len(BLOCKS) >= 25
    assert sum(marked for _, _, marked in BLOCKS) >= 4


@pytest.mark.parametrize(
    ("where", "source"), [(w, s) for w, s, _ in BLOCKS], ids=[w for w, _, _ in BLOCKS]
)
def test_snippet_compiles(where: str, source: str) -> None:
    compile(source, where, "exec", flags=FLAGS)


@pytest.mark.parametrize(
    ("where", "source"),
    [(w, s) for w, s, marked in BLOCKS if marked],
    ids=[w for w, _, marked in BLOCKS if marked],
)
def test_self_contained_snippet_runs(
    where: str, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("JWT_SECRET", "AGENTHOOD_JWT_SECRET"):
        monkeypatch.setenv(name, "docs-snippet-secret-" + "d" * 40)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-snippet")
    code = compile(source, where, "exec", flags=FLAGS)
    namespace: dict[str, object] = {"__name__": "__snippet__"}
    result = eval(code, namespace)  # noqa: S307 - our own documentation
    if asyncio.iscoroutine(result):
        asyncio.run(result)


# -- fragments: their imports resolve and their calls fit the real signatures ----------------------
#: Names the docs use for objects they do not create in the fragment itself.
CONVENTIONAL_VARIABLES = {"meter": ("agenthood_mw.metering", "Meter")}


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize(
    ("where", "source"), [(w, s) for w, s, _ in BLOCKS], ids=[w for w, _, _ in BLOCKS]
)
def test_snippet_imports_resolve(where: str, source: str) -> None:
    """Every import a snippet shows works as written (every extra is installed here), e.g.
    ``RedisBackend`` comes from ``agenthood_mw.memory.redis``, not ``agenthood_mw.memory``."""
    tree = ast.parse(source, where)
    for node in _imports(tree):
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("agenthood_mw"):
            continue
        if isinstance(node, ast.Import) and not any(
            a.name.startswith("agenthood_mw") for a in node.names
        ):
            continue
        code = compile(ast.Module(body=[node], type_ignores=[]), where, "exec")
        try:
            exec(code, {})  # noqa: S102 - an import statement of our own documentation
        except ImportError as exc:
            pytest.fail(f"{where}: line {node.lineno} of the block: {exc}")


def _callee(node: ast.Call, names: dict[str, object]) -> tuple[object, bool] | None:
    """The real object a call refers to and whether it is called through an instance."""
    func = node.func
    if isinstance(func, ast.Name) and func.id in names:
        return names[func.id], False
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        owner = func.value.id
        if owner in names:
            target = getattr(names[owner], func.attr, None)
            return (target, False) if target is not None else None
        if owner in CONVENTIONAL_VARIABLES:
            module, cls = CONVENTIONAL_VARIABLES[owner]
            target = getattr(getattr(importlib.import_module(module), cls), func.attr, None)
            return (target, True) if target is not None else None
    return None


def _is_ellipsis(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def _check_call(node: ast.Call, target: object, bound: bool, where: str) -> None:
    """``...`` stands for arguments left out: then only what is shown is checked."""
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return  # *args / **kwargs: not checkable statically
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    shown = [a for a in node.args if not _is_ellipsis(a)]
    partial = len(shown) < len(node.args) or any(_is_ellipsis(k.value) for k in node.keywords)
    args = [object()] * (len(shown) + int(bound))
    kwargs = {k.arg: object() for k in node.keywords if k.arg is not None}
    try:
        (signature.bind_partial if partial else signature.bind)(*args, **kwargs)
    except TypeError as exc:
        pytest.fail(f"{where}: {ast.unparse(node)}: {exc}")


@pytest.mark.parametrize(
    ("where", "source"), [(w, s) for w, s, _ in BLOCKS], ids=[w for w, _, _ in BLOCKS]
)
def test_snippet_calls_fit_the_signatures(where: str, source: str) -> None:
    """A call to a library name (imported in the block, or a conventional variable such as
    ``meter``) passes arguments its signature accepts: keyword-only options are never shown
    positionally."""
    tree = ast.parse(source, where)
    names: dict[str, object] = {}
    for node in _imports(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agenthood_mw"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if hasattr(module, alias.name):
                    names[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found = _callee(node, names)
            if found is not None:
                _check_call(node, found[0], found[1], where)


# -- inline code in the prose: a call shown with arguments fits the real signature -------------
_PUBLIC_MODULES = (
    "agenthood_mw",
    "agenthood_mw.api",
    "agenthood_mw.auth",
    "agenthood_mw.memory",
    "agenthood_mw.memory.postgres",
    "agenthood_mw.memory.redis",
    "agenthood_mw.metering",
    "agenthood_mw.ratelimit",
    "agenthood_mw.testing",
)
_INLINE = re.compile(r"`([^`]+)`")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _public_names() -> dict[str, object]:
    names: dict[str, object] = {}
    for module_name in _PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            names.setdefault(name, getattr(module, name))
    return names


def _inline_calls() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        prose = _FENCE.sub("", path.read_text(encoding="utf-8"))
        for span in _INLINE.findall(prose):
            text = " ".join(span.split())  # a span may wrap over lines
            if "(" in text and not text.startswith(("$", "pip ", "agenthood ")):
                found.append((path.name, text))
    return found


def test_inline_calls_fit_the_signatures() -> None:
    """E.g. ``meter.record(model, input_tokens, ...)`` in the prose would show keyword-only
    options as positional; ``Budget(per="agent")`` (arguments left out) is fine."""
    names = _public_names()
    checked = 0
    for where, text in _inline_calls():
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            continue  # prose such as `f(x)` with unbalanced text, or a signature with `*`
        if isinstance(node, ast.Call):
            found = _callee(node, names)
            if found is not None:
                checked += 1
                _check_partial(node, found[0], found[1], f"{where}: `{text[:60]}`")
    assert checked >= 20  # the check sees the docs' calls


def _check_partial(node: ast.Call, target: object, bound: bool, where: str) -> None:
    """Prose shows calls in shorthand (options left out): only what is shown must fit."""
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    shown = [a for a in node.args if not _is_ellipsis(a)]
    kwargs = {k.arg: object() for k in node.keywords if k.arg is not None}
    try:
        signature.bind_partial(*([object()] * (len(shown) + int(bound))), **kwargs)
    except TypeError as exc:
        pytest.fail(f"{where}: {exc}")
