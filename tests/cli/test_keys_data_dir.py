"""``agenthood keys create|list|revoke`` accept ``--data-dir`` after the action too."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenthood_mw.cli import main


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTHOOD_DATA_DIR", str(tmp_path / "default-dir"))
    monkeypatch.setenv("AGENTHOOD_JWT_SECRET", "keys-data-dir-secret-" + "k" * 40)


def test_keys_data_dir_after_the_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chosen = tmp_path / "chosen"
    assert (
        main(["keys", "create", "--user", "u1", "--tenant", "acme", "--data-dir", str(chosen)]) == 0
    )
    secret = capsys.readouterr().out.strip()
    key_id = secret.split("_")[1]
    assert (chosen / "keys.db").exists()
    assert not (tmp_path / "default-dir" / "keys.db").exists()

    assert main(["keys", "list", "--data-dir", str(chosen)]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "u1" in listing

    # given before the action, it is not reset by the action's own (absent) option
    assert main(["keys", "--data-dir", str(chosen), "revoke", key_id]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--data-dir", str(chosen)]) == 0
    assert "revoked" in capsys.readouterr().out

    assert main(["keys", "list"]) == 0
    assert key_id not in capsys.readouterr().out
