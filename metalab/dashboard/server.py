"""Start the dashboard in a child process and stop it again, for tests, benchmarks and scripts.

    >>> with serve() as base:                                   # doctest: +SKIP
    ...     urllib.request.urlopen(f"{base}/_stcore/health")

:func:`serve` runs ``python -m metalab.cli app`` on a free localhost port in its own process group (the
CLI runs Streamlit as a child), waits until Streamlit's health endpoint answers, yields the base URL, and
always stops the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HEALTH = "/_stcore/health"


def free_port() -> int:
    """A localhost TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(
    python: str = sys.executable,
    *,
    cwd: str | Path | None = None,
    log_path: str | Path = os.devnull,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Serve the dashboard with the interpreter ``python`` (one with metalab installed); yield its base URL.

    Parameters
    ----------
    python, cwd, env:
        The interpreter, working directory and environment of the server process.
    log_path:
        Where the server's output goes (it is quoted in the error when the server exits early).
    timeout:
        Seconds to wait for the first healthy answer.

    Raises
    ------
    RuntimeError
        When the server exits before it answers (with its log) or does not answer within ``timeout``.
    """
    port = free_port()
    log_path = Path(log_path)
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [python, "-m", "metalab.cli", "app", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_healthy(server, base, timeout, log_path)
            yield base
        finally:
            _stop(server)


def _wait_until_healthy(server: subprocess.Popen, base: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            log = "" if str(log_path) == os.devnull else log_path.read_text()
            raise RuntimeError(f"the dashboard exited with {server.returncode} before answering:\n{log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(base + HEALTH, timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard did not answer at {base} within {timeout:.0f} s")
        time.sleep(0.25)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after 10 s."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
