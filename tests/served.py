"""Serve a real HTTP process for a test: a free 127.0.0.1 port, wait for /health, stop it.

Shared by the end-to-end tests (the ``agenthood serve`` demo, the examples under uvicorn and
waitress, several workers sharing Redis). The root ``conftest.py`` puts this folder on
``sys.path``.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

__all__ = ["free_port", "served"]


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
    what: str = "the server",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``command`` (which listens on ``port``), wait until ``GET /health`` answers 200,
    yield ``(base URL, process)``, then terminate it (killed if it does not stop in time).

    Fails the test with the process's output when it exits or does not answer in ``timeout``.
    """
    # Output goes to a file, not a pipe: a chatty server must never block on a full pipe.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=5)
                log.seek(0)
                output = log.read().decode(errors="replace")
                pytest.fail(f"{what} did not answer /health within {timeout:.0f} s:\n{output}")
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
