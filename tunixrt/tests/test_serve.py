"""bin/serve supervises: a worker that dies is started again, the web server keeps answering, one beat only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int, command: str) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid), "-f", command], capture_output=True, text=True).stdout
    return [int(line) for line in found.split()]


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "SECRET_KEY": "x",
        "TUNIXRT_ENV_FILE": "/dev/null",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "TUNIXRT_VAR_DIR": str(tmp_path / "var"),
        "VENV": str(ROOT / ".venv"),
        "PORT": str(port),
        "WEB_WORKERS": "1",
        "CELERY_WORKER_CONCURRENCY": "1",
    }
    process = subprocess.Popen(
        [str(ROOT / "bin" / "serve")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "tunix-rt is up" in line:
                break
        yield process, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_killed_worker_is_started_again_and_the_web_keeps_answering(serve):
    process, port = serve
    wait_for(lambda: children(process.pid, "celery -A tunixrt worker"), 10, "the worker")
    wait_for(lambda: children(process.pid, "celery -A tunixrt beat"), 10, "beat")
    (worker,) = children(process.pid, "celery -A tunixrt worker")
    (beat,) = children(process.pid, "celery -A tunixrt beat")

    os.kill(worker, signal.SIGKILL)

    wait_for(lambda: children(process.pid, "celery -A tunixrt worker") not in ([], [worker]), 20, "a new worker")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=10) as response:
        assert response.status == 200
    assert process.poll() is None
    # Beat is its own process: the worker's death neither took it along nor started a second one.
    assert children(process.pid, "celery -A tunixrt beat") == [beat]
