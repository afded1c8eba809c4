"""API-key stores (memory and SQLite): create, list, revoke, expiry, hashing, concurrency."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from auth_support import starlette_app
from starlette.testclient import TestClient

from agenthood_mw.auth import (
    AuthMiddleware,
    InMemoryKeyStore,
    KeyStore,
    SQLiteKeyStore,
    create_api_key,
)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryKeyStore()
    else:
        s = SQLiteKeyStore(tmp_path / "keys.db")
        yield s
        s.close()


def test_create_list_revoke(store: Any) -> None:
    assert isinstance(store, KeyStore)
    a = create_api_key(store, user_id="alice", scopes=["agents:run"], name="laptop")
    b = create_api_key(store, user_id="bob", tenant="acme", expires_in="30d")
    assert a.secret.startswith("ah_") and a.secret not in repr(a)
    assert [r.key_id for r in store.list()] == [a.key_id, b.key_id]
    assert [r.key_id for r in store.list(user_id="bob")] == [b.key_id]
    listed = store.list(user_id="alice")[0]
    assert listed.scopes == frozenset({"agents:run"}) and listed.name == "laptop"
    assert a.secret not in repr(listed) and listed.secret_hash != a.secret
    assert b.expires_at is not None and b.expires_at > time.time() + 29 * 86400
    assert store.revoke(a.key_id) is True
    assert store.revoke(a.key_id) is False
    assert store.revoke("000000000000") is False
    assert store.get(a.key_id).revoked


def test_create_validates(store: Any) -> None:
    with pytest.raises(ValueError, match="user_id"):
        create_api_key(store, user_id="")
    with pytest.raises(ValueError, match="expires_in"):
        create_api_key(store, user_id="a", expires_in="soon")
    with pytest.raises(ValueError, match="scopes"):
        create_api_key(store, user_id="a", scopes=["two words"])
    with pytest.raises(TypeError, match="store"):
        create_api_key({}, user_id="a")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("user_id", "Ame\u0301lie", "NFC"),
        ("user_id", "\ue000", "control or invalid character"),
        ("user_id", "u" * 257, "longer than 256"),
        ("tenant", "\u0378", "control or invalid character"),
        ("tenant", "acme\ud800", "control or invalid character"),
    ],
)
def test_create_refuses_ids_that_cannot_name_a_memory_scope(
    store: Any, option: str, value: str, problem: str
) -> None:
    args: dict[str, Any] = {"user_id": "alice", option: value}
    with pytest.raises(ValueError, match=f"^{option}: .*memory scope.*{problem}"):
        create_api_key(store, **args)
    assert store.list() == []  # nothing stored


def test_sqlite_stores_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = SQLiteKeyStore(path)
    created = create_api_key(store, user_id="alice")
    store.close()
    raw = (
        path.read_bytes() + (tmp_path / "keys.db-wal").read_bytes()
        if (tmp_path / "keys.db-wal").exists()
        else path.read_bytes()
    )
    assert created.secret.encode() not in raw
    assert created.secret.split("_")[2][:43].encode() not in raw
    rows = sqlite3.connect(path).execute("SELECT secret_hash FROM agenthood_api_keys").fetchall()
    assert len(rows) == 1 and len(rows[0][0]) == 64
    reopened = SQLiteKeyStore(path)
    assert reopened.get(created.key_id).user_id == "alice"
    reopened.close()


def test_revocation_is_immediate_through_the_middleware(store: Any) -> None:
    created = create_api_key(store, user_id="alice")
    client = TestClient(AuthMiddleware(starlette_app(), strategy="api_key", key_store=store))
    headers = {"Authorization": f"Bearer {created.secret}"}
    assert client.get("/me", headers=headers).status_code == 200
    store.revoke(created.key_id)
    assert client.get("/me", headers=headers).status_code == 401


def test_expiry(store: Any) -> None:
    client = TestClient(AuthMiddleware(starlette_app(), strategy="api_key", key_store=store))
    created = create_api_key(store, user_id="alice", expires_in=0.5)
    headers = {"X-API-Key": created.secret}
    assert client.get("/me", headers=headers).status_code == 200
    time.sleep(0.55)
    assert client.get("/me", headers=headers).status_code == 401


def test_concurrent_creation_and_lookup(store: Any) -> None:
    """8 threads create keys and authenticate with them at once: no lost or crossed keys."""
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    from agenthood_mw.auth._protocol import Credential
    from agenthood_mw.auth._strategies import APIKeyAuthenticator

    auth = APIKeyAuthenticator(store)

    def worker(i: int) -> None:
        try:
            for j in range(10):
                created = create_api_key(store, user_id=f"user{i}-{j}")
                ident = auth.authenticate(Credential(created.secret, "authorization"))
                results.append((created.user_id, ident.user_id))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(results) == 80 and all(a == b for a, b in results)
    assert len(store.list()) == 80
