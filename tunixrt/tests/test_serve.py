"""bin/serve supervises: one worker per queue, a worker that dies is started again, the web answers, one beat only."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
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
    # As `make run` leaves it after `migrate`: the file exists in WAL mode before the processes start
    # (on a new file they would all switch it to WAL at once, and SQLite refuses all but one).
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        db.execute("PRAGMA journal_mode=WAL")
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
        "CELERY_WORKER_CONCURRENCY": "2",
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
                assert "worker-default.log" in line and "worker-training.log" in line, line
                break
        yield process, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def worker_of(pid: int, queue: str) -> list[int]:
    return children(pid, f"celery -A tunixrt worker --loglevel=INFO -Q {queue} --hostname {queue}@")


def test_serve_starts_one_worker_per_queue_with_its_own_name_log_and_concurrency(serve, tmp_path):
    process, _ = serve
    wait_for(lambda: worker_of(process.pid, "default") and worker_of(process.pid, "training"), 10, "both workers")
    ((default,), (training,)) = worker_of(process.pid, "default"), worker_of(process.pid, "training")
    assert len(children(process.pid, "celery -A tunixrt worker")) == 2
    # CELERY_WORKER_CONCURRENCY (2) pool processes for builds and indexing, TRAINING_WORKER_CONCURRENCY (1) for runs.
    wait_for(lambda: len(children(default, "celery")) == 2 and len(children(training, "celery")) == 1, 60, "the pools")
    for queue in ("default", "training"):
        log = tmp_path / "var" / "log" / f"worker-{queue}.log"
        banner = f".> {queue} "
        wait_for(lambda: banner in log.read_text(), 60, f"the {queue} worker's banner")  # noqa: B023 - called at once
        assert f"{queue}@" in log.read_text()


def test_a_killed_worker_is_started_again_and_the_web_keeps_answering(serve):
    process, port = serve
    wait_for(lambda: worker_of(process.pid, "default") and worker_of(process.pid, "training"), 10, "both workers")
    wait_for(lambda: children(process.pid, "celery -A tunixrt beat"), 10, "beat")
    (worker,) = worker_of(process.pid, "training")
    (other,) = worker_of(process.pid, "default")
    (beat,) = children(process.pid, "celery -A tunixrt beat")

    os.kill(worker, signal.SIGKILL)

    wait_for(lambda: worker_of(process.pid, "training") not in ([], [worker]), 20, "a new training worker")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=10) as response:
        assert response.status == 200
    assert process.poll() is None
    # Only the dead worker was replaced; beat is its own process: the worker's death neither took
    # it along nor started a second one.
    assert worker_of(process.pid, "default") == [other]
    assert children(process.pid, "celery -A tunixrt beat") == [beat]


def web_workers(pid: int) -> list[int]:
    (server,) = children(pid, "granian --interface wsgi tunixrt.wsgi:application")
    return children(server, "granian")


def test_a_killed_web_worker_is_started_again(serve):
    process, port = serve
    (worker,) = web_workers(process.pid)

    os.kill(worker, signal.SIGKILL)

    wait_for(lambda: web_workers(process.pid) not in ([], [worker]), 20, "a new web worker")
    wait_for(lambda: login_page(port) == 200, 30, "the login page from the new worker")
    assert process.poll() is None


def login_page(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=10) as response:
            return int(response.status)
    except OSError:
        return 0


def test_an_over_long_url_is_answered_414_by_django_as_json_and_by_the_server_past_its_limit(serve):
    _, port = serve
    for length, body in ((10_000, b'{"detail": "The URL is longer than 8,192 characters."}'), (70_000, b"")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"GET /api/traces?q={'a' * length} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            sock.sendall(head.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status, _, content = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 414"), status[:100]
        if body:  # Django's answer (sent chunked)
            assert body in content, content[:200]
        else:  # granian's own, empty
            assert b"detail" not in content, content[:200]
