"""`launch_run` (optionally waiting for the end) and `reap_jobs` from the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import execute_run
from runs.models import Run
from runs.tests.run_support import FAST, make_run
from tunixrt.tests.task_support import intercept_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline_worker(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Queueing a run executes it right away in this process, as a worker would."""
    outcomes: list[str] = []
    intercept_task(monkeypatch, "runs.execute_run", lambda args: outcomes.append(execute_run(args[0], "inline")))
    return outcomes


def test_launch_and_wait_prints_the_log_until_the_run_ends(dataset, inline_worker, capsys):
    call_command("launch_run", "--dataset", dataset.key, "--set", "mode=dry_run", "--wait", "--poll", "0.1")
    run = Run.objects.get()
    out = capsys.readouterr().out
    assert out.startswith(f"Run {run.pk} queued (dry_run, tiny, {dataset.key}).")
    assert "  training child started (pid " in out
    assert "  dry_run: " in out
    assert out.rstrip().endswith(f"Run {run.pk}: completed")
    assert inline_worker == [RunStatus.COMPLETED]


def test_launch_and_wait_fails_when_the_run_does_not_complete(dataset, inline_worker, capsys):
    with pytest.raises(CommandError, match=r"Run \d+ ended failed\."):
        call_command(
            "launch_run", "--dataset", dataset.key, "--set", "mode=dry_run", "--set", "max_seq_length=16", "--wait"
        )
    assert "No training example has an answer token left" in capsys.readouterr().out


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="a second real training run; it runs on the PostgreSQL + Redis pass"
)
def test_launch_and_wait_of_a_training_run_prints_the_loss(dataset, inline_worker, capsys):
    overrides = [f"--set={name}={value}" for name, value in FAST.items() if name != "base_model"]
    call_command("launch_run", "--dataset", dataset.key, *overrides, "--wait")
    out = capsys.readouterr().out
    assert "  step 20: loss " in out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("loss ") and last.endswith(" in 20 steps")
    first, final = (float(x) for x in last.removeprefix("loss ").removesuffix(" in 20 steps").split(" → "))
    assert final < first


def test_reap_jobs_prints_what_it_did(dataset, settings, monkeypatch, capsys):
    sent: list[tuple[int, ...]] = []
    intercept_task(monkeypatch, "runs.execute_run", sent.append)
    settings.RUN_MAX_ATTEMPTS = 2
    old = timezone.now() - timedelta(hours=1)
    resumable = make_run(dataset)
    exhausted = make_run(dataset)
    cancelling = make_run(dataset)
    Run.objects.filter(pk__in=[resumable.pk, exhausted.pk]).update(status=RunStatus.RUNNING, heartbeat_at=old)
    Run.objects.filter(pk=exhausted.pk).update(attempt=2)
    Run.objects.filter(pk=cancelling.pk).update(status=RunStatus.CANCEL_REQUESTED, heartbeat_at=old)

    call_command("reap_jobs")
    assert capsys.readouterr().out.splitlines() == [
        "runs.Run: 1 requeued, 1 failed, 1 cancelled",
        "runs.Evaluation: nothing to do",
        "traces.Dataset: nothing to do",
    ]
    assert sent == [(resumable.pk,)]
    call_command("reap_jobs")
    assert "runs.Run: nothing to do" in capsys.readouterr().out
