"""Fixtures for the run tests: run folders per test, one shared JAX compile cache, datasets, the queue."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs.tests.run_support import build_arithmetic_dataset
from traces.models import Dataset
from tunixrt.celery import app as celery_app
from tunixrt.tests.task_support import intercept_task

# Shared by every test (and by both passes of bin/run-tests): the persistent
# compile cache turns each child's ~3 s first-step compile into a lookup.
JAX_CACHE = Path(os.environ.get("TUNIXRT_TEST_JAX_CACHE") or Path(tempfile.gettempdir()) / "tunixrt-test-jax-cache")
CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def run_folders(settings: Any, tmp_path: Path) -> Path:
    """RUNS_DIR and MODELS_DIR inside this test's tmp_path; the JAX cache stays shared."""
    settings.RUNS_DIR = tmp_path / "runs"
    settings.MODELS_DIR = tmp_path / "models"
    settings.JAX_CACHE_DIR = JAX_CACHE
    settings.RUNS_DIR.mkdir()
    settings.MODELS_DIR.mkdir()
    return tmp_path


@pytest.fixture
def dataset(db: Any) -> Dataset:
    """`arith@v1`: 32 learnable arithmetic traces, 8 of them in the validation split."""
    return build_arithmetic_dataset()


class SentTasks(list[tuple[int, ...]]):
    """The argument tuples of every execute_run task sent (instead of reaching a broker)."""


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> SentTasks:
    """Publishing a run task records its arguments and answers a fake task id."""
    sent = SentTasks()

    def record(args: tuple[int, ...]) -> str:
        sent.append(args)
        return f"task-{len(sent)}"

    intercept_task(monkeypatch, "runs.execute_run", record)
    return sent


def _forget_broker_connections() -> None:
    """Drop the app's pools so the next publish connects to the broker URL configured now."""
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Celery app points at a closed port for the length of the test, then is restored."""
    conf = celery_app.conf
    saved = {key: conf.get(key) for key in ("broker_url", "broker_transport_options")}
    _forget_broker_connections()
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", CLOSED_PORT_BROKER)
    conf.update(
        broker_url=CLOSED_PORT_BROKER,
        broker_transport_options={"socket_connect_timeout": 1, "socket_timeout": 1},
    )
    try:
        yield CLOSED_PORT_BROKER
    finally:
        _forget_broker_connections()
        conf.update(saved)


@pytest.fixture
def empty_queue() -> Iterator[None]:
    """No task message from an earlier test is waiting, and none this test leaves survives it."""
    celery_app.control.purge()
    yield
    celery_app.control.purge()
