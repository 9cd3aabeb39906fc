"""Edges of resume and cancel: a resume with no step left, a cancel before any step, a child the kernel killed."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from runs.choices import RunStatus
from runs.execution import Supervisor, execute_run
from runs.models import CHILD_KILLED, Run
from runs.tests.run_support import finished_run, log_text, make_run, output
from tunixrt import jobs

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
    assert jobs.reap_kind(Run)["requeued"] == 1

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


def test_a_child_killed_from_outside_fails_saying_so_unlike_an_ordinary_crash(dataset, settings, tmp_path):
    # What the out-of-memory killer does to a child that is loading; an ordinary crash exits with a code.
    script = tmp_path / "python"
    script.write_text('#!/bin/sh\necho \'{"event": "log", "text": "loading"}\'\nkill -9 $$\n')
    script.chmod(0o755)
    settings.TRAINING_PYTHON = str(script)
    killed = make_run(dataset)
    assert execute_run(killed.pk) == RunStatus.FAILED
    killed.refresh_from_db()
    assert killed.exit_code == -9
    assert killed.error == CHILD_KILLED
    assert killed.killed_by_system

    script.write_text("#!/bin/sh\necho 'out of luck' >&2\nexit 1\n")
    crashed = make_run(dataset)
    assert execute_run(crashed.pk) == RunStatus.FAILED
    crashed.refresh_from_db()
    assert crashed.error == "The training process exited with code 1. Last output: out of luck"
    assert not crashed.killed_by_system


def test_a_child_we_killed_ourselves_is_not_blamed_on_memory(dataset, settings, tmp_path):
    script = tmp_path / "python"
    script.write_text('#!/bin/sh\ntrap \'\' TERM\necho \'{"event": "log", "text": "busy"}\'\nexec sleep 120\n')
    script.chmod(0o755)
    settings.TRAINING_PYTHON = str(script)
    settings.RUN_KILL_GRACE_SECONDS = 1
    run = make_run(dataset)
    Run.objects.filter(pk=run.pk).update(timeout_seconds=1)

    assert execute_run(run.pk) == RunStatus.TIMEOUT

    run.refresh_from_db()
    assert run.exit_code == -9
    assert run.error == "Timed out after 1 seconds."
    assert not run.killed_by_system


def killed_run(dataset, **overrides):
    run = finished_run(dataset, RunStatus.FAILED, files=False, **overrides)
    Run.objects.filter(pk=run.pk).update(exit_code=-9, error=CHILD_KILLED)
    run.refresh_from_db()
    return run


def hint_link(content: str) -> dict[str, list[str]]:
    start = content.index('id="retry-smaller" href="') + len('id="retry-smaller" href="')
    url = urlsplit(content[start : content.index('"', start)].replace("&amp;", "&"))
    assert url.path == "/runs/new/"
    return parse_qs(url.query)


def test_the_page_of_a_run_killed_for_memory_suggests_a_smaller_batch(page, dataset):
    run = killed_run(dataset, batch_size=16, max_seq_length=256, max_steps=40)

    response = page.get(f"/runs/{run.pk}/")

    content = response.content.decode()
    assert 'id="memory-hint"' in content
    assert "Probably out of memory." in content
    assert "4096 tokens per step: batch size 16 × max sequence length 256" in content
    assert "Retry with batch size 8…" in content
    query = hint_link(content)
    assert query["batch_size"] == ["8"]
    assert query["max_seq_length"] == ["256"]
    assert query["max_steps"] == ["40"]
    assert query["dataset"] == [dataset.key]
    # The launch form opens with those values filled in.
    form = page.get("/runs/new/", {name: values[0] for name, values in query.items()})
    assert 'name="batch_size" value="8"' in form.content.decode()


def test_at_batch_size_one_the_hint_halves_the_sequence_length(page, dataset):
    run = killed_run(dataset, batch_size=1, max_seq_length=512)
    content = page.get(f"/runs/{run.pk}/").content.decode()
    assert "Retry with batch size 1, max sequence length 256…" in content
    query = hint_link(content)
    assert (query["batch_size"], query["max_seq_length"]) == (["1"], ["256"])


def test_other_failures_show_no_memory_hint(page, dataset):
    run = finished_run(dataset, RunStatus.FAILED, files=False)
    Run.objects.filter(pk=run.pk).update(exit_code=1, error="The training process exited with code 1.")
    assert 'id="memory-hint"' not in page.get(f"/runs/{run.pk}/").content.decode()
