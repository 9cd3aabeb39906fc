"""One lifecycle for runs, evaluations and dataset builds: claim, beat, finish, cancel and one reaper."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.evaluation.running import execute_evaluation, launch_evaluation
from runs.models import EvalItem, Evaluation, Prediction, Run
from runs.tests.eval_support import (
    completed_run,
    fake_generator,
    make_eval_set,
    record_evaluation_tasks,
    use_eval_folders,
)
from traces.models import Dataset
from tunixrt import jobs
from tunixrt.tests.task_support import intercept_task

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = {f"What is {n} + {n}?": f"Answer: {2 * n}" for n in range(1, 5)}


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def evaluation(dataset, monkeypatch) -> Evaluation:
    record_evaluation_tasks(monkeypatch)
    return launch_evaluation(completed_run(dataset), make_eval_set("quiz"), max_new_tokens=16)


def lose_worker(model: type[jobs.Job], pk: int, **fields: object) -> None:
    stale = timezone.now() - timedelta(minutes=10)
    model._default_manager.filter(pk=pk).update(heartbeat_at=stale, started_at=stale, worker_host="worker-9", **fields)


def test_every_kind_is_a_job_with_the_same_lifecycle():
    assert [m._meta.label for m in jobs.job_models()] == ["runs.Run", "runs.Evaluation", "traces.Dataset"]
    for model in jobs.job_models():
        assert issubclass(model, jobs.Job)
        assert model.job_task  # published by name


def test_an_evaluation_whose_worker_died_is_resumed_and_answers_only_the_missing_items(
    settings, tmp_path: Path, evaluation, monkeypatch
):
    # The first attempt stored two answers, then its worker died.
    claimed = jobs.claim(Evaluation, evaluation.pk, "first")
    assert claimed is not None
    for item in EvalItem.objects.filter(eval_set=evaluation.eval_set).order_by("position")[:2]:
        Prediction.objects.create(
            evaluation=evaluation, item=item, raw_output="Answer: 0", extracted_answer="0",
            extraction="answer_marker", correct=False, latency_ms=1.0,
        )
    lose_worker(Evaluation, evaluation.pk, status=RunStatus.RUNNING)

    resumed: list[str] = []
    intercept_task(monkeypatch, "runs.execute_evaluation", lambda args: resumed.append(execute_evaluation(args[0])))
    fake_generator(settings, tmp_path, ANSWERS)
    counts = jobs.reap()["runs.Evaluation"]

    assert counts["requeued"] == 1
    assert resumed == [RunStatus.COMPLETED]
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.COMPLETED
    assert evaluation.attempt == 2
    # Two kept from the first attempt (wrong), two generated now (right).
    assert (evaluation.done, evaluation.correct, evaluation.accuracy) == (4, 2, 0.5)
    items = (Path(evaluation.run.output_dir) / "evaluations" / str(evaluation.pk) / "items.jsonl").read_text()
    assert items.count("\n") == 2


def test_an_evaluation_whose_worker_died_on_its_last_attempt_fails_with_the_reason(settings, evaluation):
    settings.RUN_MAX_ATTEMPTS = 1
    lose_worker(Evaluation, evaluation.pk, status=RunStatus.RUNNING)
    assert jobs.reap()["runs.Evaluation"]["failed"] == 1
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.FAILED
    assert evaluation.error.startswith("Worker worker-9 lost: no heartbeat since")
    assert evaluation.finished_at is not None


def test_a_cancel_whose_worker_died_ends_cancelled(evaluation):
    lose_worker(Evaluation, evaluation.pk, status=RunStatus.CANCEL_REQUESTED)
    assert jobs.reap()["runs.Evaluation"]["cancelled"] == 1
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.CANCELLED


def test_a_live_evaluation_is_left_alone(evaluation):
    jobs.claim(Evaluation, evaluation.pk)
    assert jobs.reap()["runs.Evaluation"] == {"requeued": 0, "failed": 0, "cancelled": 0, "published": 0}
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.RUNNING


def test_the_claim_is_guarded_so_a_redelivered_message_does_nothing(evaluation):
    assert jobs.claim(Evaluation, evaluation.pk, "a") is not None
    assert jobs.claim(Evaluation, evaluation.pk, "b") is None
    evaluation.refresh_from_db()
    assert evaluation.celery_task_id == "a"


def test_finish_loses_to_the_reaper_when_the_attempt_was_already_ended(evaluation, settings):
    settings.RUN_MAX_ATTEMPTS = 1
    claimed = jobs.claim(Evaluation, evaluation.pk)
    lose_worker(Evaluation, evaluation.pk)
    jobs.reap()
    # The worker was not dead after all and tries to finish: the reaper's verdict stands.
    assert not jobs.finish(claimed, RunStatus.COMPLETED)
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.FAILED


def test_datasets_cannot_be_cancelled_runs_and_evaluations_can(dataset, evaluation):
    with pytest.raises(jobs.JobNotActive, match="cannot be cancelled"):
        Dataset.objects.get(pk=dataset.pk).cancel()
    evaluation.cancel()
    assert evaluation.status == RunStatus.CANCELLED
    run = Run.objects.create(dataset=dataset, base_model="tiny")
    run.cancel()
    assert run.status == RunStatus.CANCELLED
    with pytest.raises(jobs.JobNotActive, match="already cancelled"):
        run.cancel()


def test_the_beat_schedule_runs_the_one_reaper(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "tunixrt.reap_jobs" in tasks
    assert not any(task.startswith("runs.reap") for task in tasks)
