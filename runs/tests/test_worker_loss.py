"""A run never stays `running` without a live worker: a dead child fails it, a lost worker is resumed or failed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import CHILD_KILLED, Run, RunLog, RunMetric
from runs.tests.checkpoint_support import write_checkpoint
from runs.tests.run_support import LONG, StepTrigger, kill_child, kill_child_once_saved, log_text, make_run, output
from tunixrt import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def reap_runs() -> dict[str, int]:
    return jobs.reap()["runs.Run"]


def lose_worker(run: Run, minutes: int = 10, **fields: object) -> None:
    """The row as a worker that died mid-run leaves it: running, heartbeat stopped long ago."""
    stale = timezone.now() - timedelta(minutes=minutes)
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        heartbeat_at=stale,
        started_at=stale,
        finished_at=None,
        exit_code=None,
        error="",
        worker_host="worker-7",
        **fields,
    )


def checkpoints(run: Run) -> list[int]:
    folder = output(run) / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def test_a_training_child_killed_mid_run_fails_the_run_saying_it_was_killed(dataset, monkeypatch):
    run = make_run(dataset, **LONG)
    StepTrigger(monkeypatch, 4, kill_child)

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.exit_code == -9
    # Killed from outside, as the out-of-memory killer does: the reason says so and what to try.
    assert run.error == CHILD_KILLED
    assert "SIGKILL" in run.error
    assert "smaller batch size" in run.error
    assert run.finished_at is not None
    assert "finished: failed" in log_text(run)
    assert run.summary["steps_done"] >= 4


def test_a_child_that_crashes_reports_its_last_output(dataset, settings, tmp_path: Path):
    script = tmp_path / "crashing-python"
    script.write_text("#!/bin/sh\necho 'loading…' >&2\necho 'Segmentation fault (core dumped)' >&2\nexit 139\n")
    script.chmod(0o755)
    settings.TRAINING_PYTHON = str(script)
    run = make_run(dataset)

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.exit_code == 139
    assert run.error == (
        "The training process exited with code 139. Last output: loading… | Segmentation fault (core dumped)"
    )
    assert "Segmentation fault" in run.stderr_tail
    assert RunLog.objects.filter(run=run, stream="stderr", text="loading…").exists()


def test_a_run_whose_base_model_vanished_fails_before_starting_a_child(dataset, settings):
    folder = settings.MODELS_DIR / "gone"
    write_checkpoint(folder, "qwen3", tokenizer="byte")
    run = make_run(dataset, base_model="local:gone")
    (folder / "model.safetensors").unlink()

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.error.startswith("Could not prepare the run: KeyError")
    assert "local:gone" in run.error
    assert "training child started" not in log_text(run)


def test_a_lost_worker_is_requeued_and_the_run_resumes_from_its_checkpoint(dataset, monkeypatch, sent_tasks):
    run = make_run(dataset, max_steps=20, checkpoint_every_steps=5, eval_every_steps=10)
    # The first attempt dies after its step-5 checkpoint (the worker's machine went away).
    trigger = StepTrigger(monkeypatch, 6, kill_child_once_saved(5))
    execute_run(run.pk)  # the trigger fires once: the next attempt runs undisturbed
    assert trigger.fired_step is not None
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.exit_code == -9
    saved = checkpoints(run)
    assert 5 in saved
    assert max(saved) < 20
    lose_worker(run)

    assert reap_runs() == {"requeued": 1, "failed": 0, "cancelled": 0, "published": 0}

    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    assert run.attempt == 2
    assert run.heartbeat_at is None
    assert "Worker worker-7 lost: no heartbeat since" in run.error
    assert sent_tasks == [(run.pk,)]
    assert "Resuming from the last checkpoint (attempt 2 of 3)." in log_text(run)
    # Nothing to reap twice.
    assert reap_runs() == {"requeued": 0, "failed": 0, "cancelled": 0, "published": 0}

    assert execute_run(run.pk, task_id="again") == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    assert run.attempt == 2
    assert run.summary["resumed_at_step"] == max(saved)
    assert run.summary["resumed_at_step"] > 0
    assert run.summary["steps_done"] == 20
    text = log_text(run)
    assert f"resumed from the checkpoint at step {max(saved)}" in text
    assert "attempt 2 on" in text
    assert (output(run) / "final" / "model.safetensors").is_file()
    # The second attempt trained only the steps after the checkpoint.
    late_steps = set(RunMetric.objects.filter(run=run, name="train_loss").values_list("step", flat=True))
    assert {max(saved) + 1, 20} <= late_steps
    seqs = list(RunLog.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(len(seqs)))  # one numbering across attempts


def test_a_lost_worker_with_no_attempts_left_fails_the_run_with_the_reason(dataset, settings, sent_tasks):
    settings.RUN_MAX_ATTEMPTS = 3
    run = make_run(dataset)
    lose_worker(run, attempt=3)

    assert reap_runs() == {"requeued": 0, "failed": 1, "cancelled": 0, "published": 0}

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Worker worker-7 lost: no heartbeat since")
    assert run.error.endswith("No attempts left.")
    assert run.finished_at is not None
    assert sent_tasks == []
    assert "No attempts left." in log_text(run)


def test_a_lost_dry_run_fails_without_a_retry(dataset, sent_tasks):
    run = make_run(dataset, mode="dry_run")
    lose_worker(run)
    assert reap_runs()["failed"] == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "no heartbeat" in run.error
    assert sent_tasks == []


def test_a_lost_worker_of_a_run_being_cancelled_ends_it_cancelled(dataset, sent_tasks):
    run = make_run(dataset)
    lose_worker(run)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.CANCEL_REQUESTED)
    assert reap_runs() == {"requeued": 0, "failed": 0, "cancelled": 1, "published": 0}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "no heartbeat" in run.error
    assert sent_tasks == []


def test_a_running_run_that_never_beat_is_stale_too(dataset, sent_tasks):
    run = make_run(dataset)
    lose_worker(run)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=None)
    assert reap_runs()["requeued"] == 1
    assert sent_tasks == [(run.pk,)]


def test_live_and_pending_runs_are_left_alone(dataset, settings, sent_tasks):
    settings.RUN_STALE_SECONDS = 60
    live = make_run(dataset)
    lose_worker(live)
    Run.objects.filter(pk=live.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=20))
    pending = make_run(dataset)
    assert reap_runs() == {"requeued": 0, "failed": 0, "cancelled": 0, "published": 0}
    assert Run.objects.get(pk=live.pk).status == RunStatus.RUNNING
    assert Run.objects.get(pk=pending.pk).status == RunStatus.PENDING
    assert sent_tasks == []


def test_a_worker_that_comes_back_does_not_overwrite_the_reapers_decision(dataset, sent_tasks):
    run = make_run(dataset)
    lose_worker(run)
    old_attempt = Run.objects.get(pk=run.pk)
    reap_runs()
    # The old worker finishes late: its write is for attempt 1, the row is on attempt 2.
    jobs.finish(old_attempt, RunStatus.COMPLETED, error="")
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    assert run.attempt == 2
