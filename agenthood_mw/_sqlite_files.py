"""Owner-only SQLite files: every store (memory, ledger and traces, API keys) opens through here.

SQLite creates a database file with ``0666 & ~umask`` -- ``0644`` under the usual umask, so in
a world-readable data directory every user's memory, spend and key hashes would be readable by
every local account. :func:`prepare_sqlite_file` creates a missing file with ``os.open(...,
0o600)`` before ``sqlite3.connect`` (atomic: the file never exists with a wider mode, and no
process-wide umask is touched). SQLite then creates the ``-wal``, ``-shm`` and ``-journal``
files with the database file's own mode, so they are ``0600`` too.

An existing file keeps its owner and group permissions (an operator may share it with a
group on purpose) but loses every permission for other users, as do its ``-wal``/``-shm``/
``-journal`` files.
"""

from __future__ import annotations

import os
import stat
from typing import Final

__all__ = ["FILE_MODE", "SIDECAR_SUFFIXES", "prepare_sqlite_file"]

#: Mode of a database file this library creates.
FILE_MODE: Final = 0o600
#: Files SQLite keeps next to a database file.
SIDECAR_SUFFIXES: Final = ("-wal", "-shm", "-journal")


def _in_memory(path: str) -> bool:
    return not path or path == ":memory:" or path.startswith("file:")


def _drop_other_access(path: str) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o007:
            os.chmod(path, mode & ~0o007)
    except FileNotFoundError:
        return
    except PermissionError:  # not our file: leave it (the start-up check warns about the dir)
        return


def prepare_sqlite_file(path: str | os.PathLike[str]) -> None:
    """Create the SQLite database ``path`` with mode 0600 if it is missing; otherwise remove
    any access for other users from it and its ``-wal``/``-shm``/``-journal`` files.

    Call it right before ``sqlite3.connect(path)``. ``":memory:"``, ``""`` and ``file:`` URIs
    are left alone. The directory must exist (``FileNotFoundError`` otherwise, as SQLite would).
    """
    name = os.fspath(path)
    if _in_memory(name):
        return
    try:
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE
        )
    except FileExistsError:
        for candidate in (name, *(name + s for s in SIDECAR_SUFFIXES)):
            _drop_other_access(candidate)
        return
    os.close(fd)
