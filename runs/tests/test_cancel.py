"""Cancel: a pending run stops at once; a running one stops at its next step and keeps a checkpoint."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import Supervisor, execute_run
from runs.models import Run, RunLog
from runs.tests.run_support import LONG, StepTrigger, finished_run, log_text, make_run, output
from tunixrt.jobs import JobNotActive

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancelling_a_pending_run_ends_it_at_once_and_no_worker_starts_it(dataset):
    run = make_run(dataset)
    run.cancel()
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert run.error == "Cancelled before it started."
    # The queued task arrives later: it finds nothing to do.
    assert execute_run(run.pk) == "not pending"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert not RunLog.objects.filter(run=run).exists()
    assert not output(run).exists()


def test_cancelling_a_running_run_stops_it_within_seconds_keeping_a_checkpoint(dataset, monkeypatch):
    run = make_run(dataset, **{**LONG, "checkpoint_every_steps": 3})
    seen: dict[str, object] = {}

    def cancel(supervisor: Supervisor) -> None:
        # What POST /api/runs/{id}/cancel does from the web process.
        row = Run.objects.get(pk=run.pk)
        row.cancel()
        seen["status"] = row.status
        seen["requested_at"] = timezone.now()

    trigger = StepTrigger(monkeypatch, 6, cancel)
    assert execute_run(run.pk) == RunStatus.CANCELLED
    stopped = time.monotonic()

    assert seen["status"] == RunStatus.CANCEL_REQUESTED
    assert trigger.fired_at is not None
    assert stopped - trigger.fired_at < 5.0, f"took {stopped - trigger.fired_at:.1f} s to stop"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.error == "Cancelled by request."
    assert run.finished_at is not None
    assert (run.finished_at - seen["requested_at"]).total_seconds() < 5.0  # type: ignore[operator]
    assert run.exit_code == 0  # a clean stop, not a kill
    assert "cancel requested: stopping at the next step" in log_text(run)
    assert "killing it" not in log_text(run)

    # It stopped soon after the request and kept its last step as a checkpoint.
    steps_done = run.summary["steps_done"]
    assert trigger.fired_step is not None
    assert trigger.fired_step <= steps_done < trigger.fired_step + 20 < LONG["max_steps"]
    saved = sorted(int(p.name) for p in (output(run) / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] == steps_done
    assert run.summary["checkpoint_steps"] == saved
    assert not (output(run) / "final").exists()  # a cancelled run exports no model


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.CANCELLED])
def test_cancelling_a_finished_run_is_refused(api, dataset, status, user):
    run = finished_run(dataset, status, files=False, created_by=user)
    with pytest.raises(JobNotActive):
        run.cancel()
    response = api.post(f"/api/runs/{run.pk}/cancel")
    assert response.status_code == 409
    assert f"is already {run.get_status_display().lower()}" in response.json()["detail"]
    run.refresh_from_db()
    assert run.status == status
