"""Every ```python block of README.md and docs/*.md compiles; the self-contained ones run.

A block preceded by the line ``<!-- snippet: self-contained -->`` (invisible when rendered)
is executed as written, in an empty namespace, in a temporary directory, with the
environment variables the docs tell the reader to set. Top-level ``await`` is allowed (the
docs show async APIs that way). Other blocks are fragments (they use the reader's ``app``,
``request`` ...) and are only compiled.
"""

from __future__ import annotations

import ast
import asyncio
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
