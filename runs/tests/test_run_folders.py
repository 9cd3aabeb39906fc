"""Run folders are never shared: a unique name per run, an owner file, no first attempt on leftovers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runs.choices import RunStatus
from runs.evaluation.running import execute_evaluation, launch_evaluation
from runs.execution import execute_run
from runs.models import Run
from runs.tests.eval_support import fake_generator, item, make_eval_set, record_evaluation_tasks
from runs.tests.run_support import finished_run, log_text, make_run, output
from runs.training.folders import OWNER_FILE

pytestmark = pytest.mark.django_db(transaction=True)

FOREIGN_DATA = b'{"prompt": "old database", "response": "old run"}\n'


@pytest.fixture
def quick_child(tmp_path: Path, settings: object) -> Path:
    """A 'training process' that reports success at once: these tests are about the folder, not Tunix."""
    script = tmp_path / "quick-python"
    script.write_text('#!/bin/sh\necho \'{"event": "done", "status": "completed", "summary": {}}\'\n')
    script.chmod(0o755)
    settings.TRAINING_PYTHON = str(script)  # type: ignore[attr-defined]
    return script


def leave_old_run(folder: Path, owner: dict[str, object] | None = None) -> None:
    """What another run (another database's run with the same id) left in `folder`."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_bytes(FOREIGN_DATA)
    (folder / "checkpoints" / "5").mkdir(parents=True)
    (folder / "checkpoints" / "5" / "state").write_bytes(b"old checkpoint")
    if owner is not None:
        (folder / OWNER_FILE).write_text(json.dumps(owner))


def owner_of(run: Run) -> dict[str, object]:
    owner: dict[str, object] = json.loads((output(run) / OWNER_FILE).read_text())
    return owner


def as_resume(run: Run, attempt: int = 2) -> None:
    """The row as the reaper leaves a run whose worker died: pending again, on its next attempt."""
    Run.objects.filter(pk=run.pk).update(status=RunStatus.PENDING, attempt=attempt)


def test_each_launched_run_gets_its_own_folder_named_by_id_and_token(api, dataset, settings, sent_tasks):
    ids = [api.post("/api/runs", {"dataset": dataset.key, "max_steps": 10}, format="json").json()["id"] for _ in "ab"]
    first, second = Run.objects.get(pk=ids[0]), Run.objects.get(pk=ids[1])
    for run in (first, second):
        assert len(run.folder_token) == 8
        assert Path(run.output_dir) == settings.RUNS_DIR / f"{run.pk}-{run.folder_token}"
    assert first.folder_token != second.folder_token
    retried = api.post(f"/api/runs/{first.pk}/retry").json()["id"]
    assert Run.objects.get(pk=retried).folder_token not in ("", first.folder_token)


def test_a_new_run_never_trains_on_files_an_old_database_left_under_its_id(dataset, settings, quick_child):
    run = make_run(dataset)
    # A database reset (or a move to PostgreSQL) numbers runs from 1 again; the old run with
    # this id left its data and checkpoint where folders used to be named by id alone.
    old_folder = settings.RUNS_DIR / str(run.pk)
    leave_old_run(old_folder)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    assert output(run) != old_folder
    assert owner_of(run) == {"run_id": run.pk, "token": run.folder_token}
    train = (output(run) / "data" / "train.jsonl").read_bytes()
    assert b"What is" in train
    assert FOREIGN_DATA not in train
    assert not (output(run) / "checkpoints").exists()
    assert (old_folder / "data" / "train.jsonl").read_bytes() == FOREIGN_DATA  # left alone


def test_a_first_attempt_refuses_a_folder_that_already_holds_files(dataset, quick_child):
    run = make_run(dataset)
    leave_old_run(output(run))

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.error == (
        f"Could not prepare the run: The run folder {output(run)} already holds files that no run claims "
        f"(no {OWNER_FILE}); a first attempt never starts on existing files. "
        "Move or delete the folder, or retry the run to train in a fresh folder."
    )
    assert "training child started" not in log_text(run)
    assert (output(run) / "data" / "train.jsonl").read_bytes() == FOREIGN_DATA
    assert not (output(run) / OWNER_FILE).exists()


def test_a_first_attempt_refuses_a_folder_another_run_owns(dataset, quick_child):
    run = make_run(dataset)
    leave_old_run(output(run), owner={"run_id": run.pk, "token": "0ld70ken"})

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.error.startswith(
        f"Could not prepare the run: The run folder {output(run)} belongs to run {run.pk} (token '0ld70ken'), "
        f"not to this run (run {run.pk}, token '{run.folder_token}')."
    )
    assert owner_of(run) == {"run_id": run.pk, "token": "0ld70ken"}


def test_a_baseline_evaluation_before_the_run_starts_does_not_block_it(
    dataset, settings, tmp_path, monkeypatch, quick_child
):
    run = make_run(dataset)
    record_evaluation_tasks(monkeypatch)
    fake_generator(settings, tmp_path, {})
    evaluation = launch_evaluation(run, make_eval_set("quiz", [item(1)]), baseline=True)
    assert execute_evaluation(evaluation.pk) == RunStatus.COMPLETED
    assert (output(run) / "evaluations" / str(evaluation.pk) / "job.json").is_file()
    settings.TRAINING_PYTHON = str(quick_child)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    assert owner_of(run) == {"run_id": run.pk, "token": run.folder_token}


def test_a_resume_continues_in_the_folder_its_first_attempt_wrote(dataset, quick_child):
    run = make_run(dataset)
    assert execute_run(run.pk) == RunStatus.COMPLETED
    (output(run) / "checkpoints" / "5").mkdir(parents=True)
    as_resume(run)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    assert (output(run) / "checkpoints" / "5").is_dir()
    assert owner_of(run) == {"run_id": run.pk, "token": run.folder_token}


@pytest.mark.parametrize(
    ("owner", "says"),
    [
        ({"run_id": 999, "token": "abcdef12"}, "belongs to run 999 (token 'abcdef12'), not to this run"),
        (None, "already holds files that no run claims (no owner.json); a resume only continues in a folder"),
    ],
    ids=["another-owner", "no-owner"],
)
def test_a_resume_in_a_folder_that_is_not_the_runs_fails_clearly(dataset, quick_child, owner, says):
    run = make_run(dataset)
    leave_old_run(output(run), owner=owner)
    as_resume(run)

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Could not prepare the run: The run folder ")
    assert says in run.error
    assert "training child started" not in log_text(run)
    assert (output(run) / "checkpoints" / "5" / "state").read_bytes() == b"old checkpoint"


def test_an_unreadable_owner_file_names_no_run(dataset, quick_child):
    run = make_run(dataset)
    output(run).mkdir()
    (output(run) / OWNER_FILE).write_bytes(b"\xff not json")
    as_resume(run)

    assert execute_run(run.pk) == RunStatus.FAILED

    run.refresh_from_db()
    assert "belongs to an unknown run, not to this run" in run.error


def legacy(run: Run, settings: object) -> Run:
    """A row from before folder tokens: folder named by id alone, no owner file written."""
    folder = settings.RUNS_DIR / str(run.pk)  # type: ignore[attr-defined]
    Run.objects.filter(pk=run.pk).update(folder_token="", output_dir=str(folder))
    run.refresh_from_db()
    return run


def test_a_run_from_before_folder_tokens_resumes_in_its_folder(dataset, settings, quick_child):
    run = legacy(make_run(dataset), settings)
    leave_old_run(output(run))  # its own first attempt's files
    as_resume(run)

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.output_dir == str(settings.RUNS_DIR / str(run.pk))
    assert (output(run) / "checkpoints" / "5" / "state").is_file()
    assert (output(run) / "data" / "train.jsonl").read_bytes() == FOREIGN_DATA  # a resume reuses its data
    # Checked from now on, like any other run's folder.
    assert owner_of(run) == {"run_id": run.pk, "token": ""}


def test_a_run_from_before_folder_tokens_that_never_started_gets_a_fresh_folder(dataset, settings, quick_child):
    run = legacy(make_run(dataset), settings)
    leave_old_run(output(run))  # whatever an old database's run with this id left

    assert execute_run(run.pk) == RunStatus.COMPLETED

    run.refresh_from_db()
    assert run.folder_token
    assert Path(run.output_dir) == settings.RUNS_DIR / f"{run.pk}-{run.folder_token}"
    assert owner_of(run) == {"run_id": run.pk, "token": run.folder_token}
    assert FOREIGN_DATA not in (output(run) / "data" / "train.jsonl").read_bytes()


def test_files_of_a_run_from_before_folder_tokens_stay_downloadable(api, dataset, settings):
    run = legacy(finished_run(dataset, files=False), settings)
    (output(run) / "final").mkdir(parents=True)
    (output(run) / "final" / "config.json").write_bytes(b'{"model_type": "qwen3"}')

    listed = api.get(f"/api/runs/{run.pk}/artifacts").json()["files"]
    assert [f["path"] for f in listed] == ["final/config.json"]
    response = api.get(f"/api/runs/{run.pk}/artifacts/final/config.json")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b'{"model_type": "qwen3"}'
