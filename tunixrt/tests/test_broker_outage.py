"""A Redis outage: the worker (idle or busy) and beat reconnect and carry on; publishing stays fail-fast.

Real processes against a throwaway redis-server on its own port, which the test
kills and restarts: `celery worker` and `celery beat` with the project's settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerUnavailable

from tunixrt.tests.process_support import sqlite_file_in_wal_mode

REDIS_PORT = 6391
BROKER_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs a redis-server binary")


def wait_until(condition: Callable[[], bool], seconds: float, what: str, logs: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tail = ""
            if logs is not None:
                tail = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
            pytest.fail(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Redis:
    """A redis-server of our own: never the shared one."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert not port_open(REDIS_PORT), f"port {REDIS_PORT} is taken"
        with (self.logs / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: port_open(REDIS_PORT), 10, "redis-server to listen")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def celery_processes(tmp_path: Path, redis: Redis) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """`celery worker` and `celery beat` (separate processes, as bin/serve runs them) on our redis."""
    marks = tmp_path / "marks"
    marks.mkdir()
    # The tasks use no database, but both processes open it at start (Django's checks).
    sqlite_file_in_wal_mode(tmp_path / "db.sqlite3")
    env = {
        **os.environ,
        "CELERY_BROKER_URL": BROKER_URL,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",  # unused by the tasks here
        "TUNIXRT_VAR_DIR": str(tmp_path / "var"),
        "TUNIXRT_ENV_FILE": "/dev/null",
        "OUTAGE_MARKS_DIR": str(marks),
        "CELERY_WORKER_CONCURRENCY": "2",
    }
    celery = [sys.executable, "-m", "celery", "-A", "tunixrt.tests.outage_celery"]
    commands = {
        "worker": [*celery, "worker", "--loglevel=INFO", "--hostname", f"outage-{os.getpid()}@%h"],
        "beat": [*celery, "beat", "--loglevel=INFO", "--schedule", str(tmp_path / "beat-schedule")],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            with (tmp_path / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        yield processes
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def send(name: str, *args: object, deadline: float = 15) -> None:
    """Publish to the throwaway broker, retrying while redis-server starts (the test's patience, not the app's)."""
    client = Celery("outage-probe")
    give_up = time.monotonic() + deadline
    while True:
        try:
            with client.connection_for_write(BROKER_URL) as connection:
                # The project's default queue: a bare client would use Celery's "celery" queue, which no worker reads.
                client.send_task(name, args=args, connection=connection, retry=False, queue=settings.DEFAULT_QUEUE)
            return
        except BrokerUnavailable:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)


def ticks(marks: Path) -> int:
    path = marks / "ticks"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_worker_and_beat_survive_a_redis_outage_while_a_task_runs(tmp_path, redis, celery_processes):
    marks = tmp_path / "marks"
    send("outage.touch", "ready")
    wait_until(lambda: (marks / "ready").exists(), 90, "the worker to run a first task", tmp_path)
    wait_until(lambda: ticks(marks) >= 2, 30, "beat to send ticks", tmp_path)
    send("outage.busy", "long", 6)
    wait_until(lambda: (marks / "long.started").exists(), 30, "the long task to start", tmp_path)

    redis.kill()  # about 3 s without a broker, the worker busy
    time.sleep(3)
    for name, process in celery_processes.items():
        assert process.poll() is None, f"{name} exited during the outage"
    redis.start()  # empty: what was queued is gone, the worker's connections are dead
    ticks_at_restart = ticks(marks)

    send("outage.touch", "after")
    wait_until(lambda: (marks / "after").exists(), 60, "a task queued after the outage to run", tmp_path)
    wait_until(lambda: (marks / "long.done").exists(), 30, "the task that ran through the outage", tmp_path)
    wait_until(lambda: ticks(marks) >= ticks_at_restart + 2, 30, "beat to send ticks again", tmp_path)
    for name, process in celery_processes.items():
        assert process.poll() is None, f"{name} exited after the outage"


def test_publishing_from_the_web_stays_fail_fast_with_the_broker_down(monkeypatch):
    """The worker retries for ever; a request that publishes does not: it gives up within seconds."""
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{REDIS_PORT + 100}/0")  # nothing listens
    web = Celery("tunixrt")  # configured as tunixrt.celery configures the web process's app
    web.config_from_object("django.conf:settings", namespace="CELERY")
    assert web.conf.broker_connection_max_retries is None  # the worker's and beat's reconnects

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        web.send_task("outage.touch", args=("never",), retry=web.conf.task_publish_retry)
    assert time.monotonic() - started < 10
