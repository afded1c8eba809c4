"""Bad memory URLs and paths fail at construction with a message naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenthood_mw.memory import SQLiteBackend, memory_from_url


def test_sqlite_path_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent_dir" / "m.db"
    with pytest.raises(ValueError, match=r"^path: directory .*nonexistent_dir.* does not exist"):
        SQLiteBackend(missing)
    with pytest.raises(ValueError, match=r"^path: directory"):
        memory_from_url(f"sqlite:///{missing}")
    assert not missing.parent.exists()


def test_sqlite_path_in_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "m.db")
    assert backend.path.endswith("m.db")


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("redis://127.0.0.1:notaport/0", "notaport"),
        ("redis://user:hunter2@127.0.0.1:99999/0", "99999"),
        ("mysql://user:hunter2@db.example", "unsupported memory backend"),
    ],
)
def test_malformed_urls_name_the_url(url: str, detail: str) -> None:
    with pytest.raises(ValueError, match=r"^url: ") as info:
        memory_from_url(url)
    assert detail in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["postgresql://user:hunter2@127.0.0.1:notaport/db", "postgresql://u@h1:5432,h2:x/db"],
)
def test_malformed_postgres_urls_name_the_dsn(url: str) -> None:
    pytest.importorskip("psycopg_pool")
    with pytest.raises(ValueError, match=r"^dsn: invalid port") as info:
        memory_from_url(url)
    assert "hunter2" not in str(info.value)


def test_non_string_url_names_the_url() -> None:
    with pytest.raises(TypeError, match=r"^url: "):
        memory_from_url(42)  # type: ignore[arg-type]
