"""A run that outlives its timeout is stopped (SIGTERM, then SIGKILL) and ends `timeout` with the reason."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.db import connection

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import Run
from runs.tests.run_support import LONG, log_text, make_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stubborn_child(tmp_path: Path, settings: object) -> Path:
    """A 'training process' that ignores SIGTERM: only SIGKILL stops it."""
    script = tmp_path / "stubborn-python"
    script.write_text(
        '#!/bin/sh\ntrap \'\' TERM\necho \'{"event": "log", "text": "ignoring SIGTERM"}\'\nexec sleep 120\n'
    )
    script.chmod(0o755)
    settings.TRAINING_PYTHON = str(script)  # type: ignore[attr-defined]
    return script


def test_a_child_that_ignores_the_stop_signal_is_killed_and_the_run_times_out(dataset, settings, stubborn_child):
    settings.RUN_KILL_GRACE_SECONDS = 1
    run = make_run(dataset)
    # Below the launch minimum (10 s) on purpose: the supervisor must enforce any value.
    Run.objects.filter(pk=run.pk).update(timeout_seconds=1)

    started = time.monotonic()
    assert execute_run(run.pk) == RunStatus.TIMEOUT
    elapsed = time.monotonic() - started

    run.refresh_from_db()
    assert run.status == RunStatus.TIMEOUT
    assert run.error == "Timed out after 1 seconds."
    assert run.exit_code == -9
    text = log_text(run)
    assert "ignoring SIGTERM" in text
    assert "timeout after 1s: stopping the child" in text
    assert "the child did not stop in time: killing it" in text
    assert elapsed < 8, f"took {elapsed:.1f} s"


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="a real 10-second timeout run is slow; it runs once, on the PostgreSQL + Redis pass",
)
def test_a_real_training_run_past_its_timeout_ends_timeout_with_the_reason(dataset, settings):
    settings.RUN_KILL_GRACE_SECONDS = 10
    run = make_run(dataset, **{**LONG, "timeout_seconds": 10})

    started = time.monotonic()
    assert execute_run(run.pk) == RunStatus.TIMEOUT
    elapsed = time.monotonic() - started

    run.refresh_from_db()
    assert run.status == RunStatus.TIMEOUT
    assert run.error == "Timed out after 10 seconds."
    assert run.finished_at is not None
    assert "timeout after 10s: stopping the child" in log_text(run)
    assert 10 <= elapsed < 10 + 10 + 5
    assert run.summary.get("steps_done", 0) < LONG["max_steps"]
