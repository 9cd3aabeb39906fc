"""Edges of resume and cancel: a resume with no step left, a cancel before any step."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import Supervisor, execute_run, reap_stale_runs
from runs.models import Run
from runs.tests.run_support import log_text, make_run, output

pytestmark = pytest.mark.django_db(transaction=True)

training_once = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="a real training run per test; it runs once, on the PostgreSQL + Redis pass",
)


@training_once
def test_a_run_resumed_at_its_last_step_completes_with_its_final_model(dataset, sent_tasks):
    # The last checkpoint is the last step: a worker lost after it has nothing left to train.
    run = make_run(dataset, max_steps=5, checkpoint_every_steps=5, eval_every_steps=5)
    assert execute_run(run.pk) == RunStatus.COMPLETED
    assert (output(run) / "checkpoints" / "5").is_dir()
    shutil.rmtree(output(run) / "final")  # the first attempt died before its final model was written
    stale = timezone.now() - timedelta(minutes=10)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=stale, finished_at=None)
    assert reap_stale_runs()["requeued"] == 1

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail[-2000:])
    assert run.attempt == 2
    assert run.error == ""
    assert run.summary["resumed_at_step"] == 5
    assert run.summary["steps_done"] == 5
    assert run.summary["final_train_loss"] is None  # no step ran in this attempt
    assert (output(run) / "final" / "model.safetensors").is_file()
    assert json.loads((output(run) / "final" / "tunixrt.json").read_text())["steps"] == 5
    assert "Traceback" not in run.stderr_tail
    assert "resumed from the checkpoint at step 5" in log_text(run)


@training_once
def test_a_cancel_before_the_first_step_ends_cancelled_without_a_traceback(dataset, monkeypatch):
    run = make_run(dataset)
    original = Supervisor.stdout_line
    asked: list[str] = []

    def stdout_line(supervisor: Supervisor, raw: bytes) -> None:
        original(supervisor, raw)
        # The child's first line comes before it imports JAX: it is still loading.
        if not asked:
            row = Run.objects.get(pk=run.pk)
            row.cancel()  # what POST /api/runs/{id}/cancel does
            asked.append(row.status)

    monkeypatch.setattr(Supervisor, "stdout_line", stdout_line)

    assert execute_run(run.pk) == RunStatus.CANCELLED

    run.refresh_from_db()
    assert asked == [RunStatus.CANCEL_REQUESTED]
    assert run.status == RunStatus.CANCELLED
    assert run.error == "Cancelled by request."
    assert run.exit_code == 0  # a clean stop
    assert run.summary["steps_done"] == 0
    assert "Traceback" not in run.stderr_tail
    assert "Traceback" not in log_text(run)
    assert "KeyError" not in log_text(run)
    assert not (output(run) / "final").exists()
