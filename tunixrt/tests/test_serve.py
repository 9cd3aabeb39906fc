"""bin/serve supervises: one worker per queue, a worker that dies is started again, the web answers, one beat only."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from runs.tests.conftest import JAX_CACHE
from tunixrt.tests.process_support import sqlite_file_in_wal_mode

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


@contextlib.contextmanager
def serving(
    tmp_path: Path, prepare: str = "", **variables: str
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`bin/serve` on a SQLite file in tmp_path, after `prepare` (Python run by `manage.py shell`)."""
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "SECRET_KEY": "x",
        "TUNIXRT_ENV_FILE": "/dev/null",
        "DATABASE_URL": f"sqlite:///{sqlite_file_in_wal_mode(tmp_path / 'db.sqlite3')}",
        "CELERY_BROKER_URL": "filesystem://",
        "TUNIXRT_VAR_DIR": str(tmp_path / "var"),
        "JAX_CACHE_DIR": str(JAX_CACHE),
        "VENV": str(ROOT / ".venv"),
        "PORT": str(port),
        "WEB_WORKERS": "1",
        "CELERY_WORKER_CONCURRENCY": "2",
        **variables,
    }
    if prepare:
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "shell", "-c", prepare],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
        )
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    with serving(tmp_path) as served:
        yield served


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
    assert login_page(port) == 200
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


# Queued before bin/serve starts: a run long enough to be training when the test stops everything.
LONG_RUN = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from runs.launching import launch_run
from runs.tests.run_support import LONG, build_arithmetic_dataset
from runs.validation import validate_launch
dataset = build_arithmetic_dataset()
launch_run(validate_launch({"dataset": dataset.key, **LONG, "checkpoint_every_steps": 5}))
"""


def query(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` from bin/serve's database, read while it runs."""
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3", timeout=20)) as db:
        return db.execute(sql).fetchall()


def steps_recorded(tmp_path: Path) -> int:
    return int(query(tmp_path, "SELECT count(*) FROM runs_runmetric WHERE name = 'train_loss'")[0][0])


def training_child(tmp_path: Path) -> int:
    """The pid of the training child, from the run's log ("training child started (pid N)")."""
    rows = query(tmp_path, "SELECT text FROM runs_runlog WHERE text LIKE '%child started (pid %'")
    assert rows, "no training child was started"
    return int(rows[-1][0].rsplit("pid ", 1)[1].rstrip(")"))


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited, not yet reaped by whoever adopted it


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="a real training run under bin/serve (its own SQLite file); it runs once, on the PostgreSQL + Redis pass",
)
def test_a_first_stop_lets_a_run_go_on_and_a_second_stops_everything_at_once(tmp_path):
    """As a supervisor stops it (TERM to bin/serve only, not to its process group): twice."""
    with serving(tmp_path, prepare=LONG_RUN) as (process, _):
        wait_for(lambda: steps_recorded(tmp_path) >= 3, 180, "three training steps")
        child = training_child(tmp_path)

        os.kill(process.pid, signal.SIGTERM)
        time.sleep(3)
        before = steps_recorded(tmp_path)
        wait_for(lambda: steps_recorded(tmp_path) > before, 30, "the run training on after the first stop")
        assert process.poll() is None and not gone(child)

        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        wait_for(lambda: gone(child), 10, "the training child to exit")
        assert subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).stdout == b""
        assert process.stdout is not None
        assert "A run or evaluation in progress finishes first" in process.stdout.read()
    stopped_at = steps_recorded(tmp_path)

    # Started again, the run goes on from its last checkpoint once the reaper finds it without a
    # heartbeat (RUN_STALE_SECONDS, 60 s by default).
    with serving(tmp_path, RUN_STALE_SECONDS="5"):
        wait_for(lambda: steps_recorded(tmp_path) > stopped_at, 180, "the run training again")
        log = "\n".join(text for (text,) in query(tmp_path, "SELECT text FROM runs_runlog ORDER BY seq"))
        assert "Resuming from the last checkpoint (attempt 2 of" in log, log[-3000:]
        starts = [int(step) for step in re.findall(r"training from step (\d+) to", log)]
        assert starts[0] == 0 and starts[-1] >= 5, log[-3000:]  # from a checkpoint (every 5 steps)
