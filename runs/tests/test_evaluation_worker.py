"""The worker's side of an evaluation, with a stand-in generator child (the real one: test_evaluation_e2e.py).

The stand-in prints the same JSON lines as `runs.training.generate` but answers
from a table, so what the worker does with them (extract, judge, store, score,
cancel, fail) is tested exactly and in a second.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from runs.choices import RunStatus
from runs.evaluation.judging import judge
from runs.evaluation.running import execute_evaluation, launch_evaluation
from runs.models import Evaluation, Prediction
from runs.tests.eval_support import (
    completed_run,
    fake_generator,
    item,
    make_eval_set,
    record_evaluation_tasks,
    use_eval_folders,
)

pytestmark = pytest.mark.django_db

ANSWERS = {
    "What is 1 + 1?": "Reasoning:\n1. 1 + 1 = 2\nAnswer: 2<end_of_turn>\nAnswer: 3",
    "What is 2 + 2?": "Reasoning:\n1. 2 + 2 = 5\nAnswer: 5",
    "What is 3 + 3?": "I think it is\n6 apples",
    "What is 4 + 4?": "\x00\x00garbage\x00 Answer: 8",
}


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def launched(dataset, monkeypatch):
    """A pending evaluation of a completed run on `quiz` (q1–q4)."""
    record_evaluation_tasks(monkeypatch)
    return launch_evaluation(completed_run(dataset), make_eval_set("quiz"), max_new_tokens=16)


def test_the_worker_extracts_judges_and_stores_every_answer(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS)

    assert execute_evaluation(launched.pk, task_id="t-1") == RunStatus.COMPLETED

    launched.refresh_from_db()
    assert launched.status == RunStatus.COMPLETED
    assert (launched.done, launched.correct, launched.accuracy) == (4, 3, 0.75)
    assert launched.celery_task_id == "t-1"
    assert launched.is_latest
    rows = {
        p.item.item_id: (p.extracted_answer, p.extraction, p.correct, p.match)
        for p in Prediction.objects.filter(evaluation=launched).select_related("item")
    }
    assert rows == {
        "q1": ("2", "answer_marker", True, "exact"),
        "q2": ("5", "answer_marker", False, ""),
        "q3": ("6 apples", "last_line", True, "numeric"),
        "q4": ("8", "answer_marker", True, "exact"),
    }
    q1 = Prediction.objects.get(evaluation=launched, item__item_id="q1")
    assert q1.raw_output == ANSWERS["What is 1 + 1?"]
    assert q1.latency_ms == 2.5
    # The job the child got: the run's final model, its chat template, bounded shapes.
    job = (Path(launched.run.output_dir) / "evaluations" / str(launched.pk) / "job.json").read_text()
    assert '"max_new_tokens": 16' in job and '"max_prompt_length": 64' in job
    assert '"kind": "local"' in job and "final" in job


def test_nul_characters_in_an_answer_are_stored_as_replacement_characters(settings, tmp_path, launched):
    # PostgreSQL text columns refuse NUL; a byte-level model emits it readily.
    fake_generator(settings, tmp_path, ANSWERS)
    assert execute_evaluation(launched.pk) == RunStatus.COMPLETED
    q4 = Prediction.objects.get(evaluation=launched, item__item_id="q4")
    assert q4.raw_output == "\ufffd\ufffdgarbage\ufffd Answer: 8"
    assert "\x00" not in q4.raw_output
    assert q4.correct


def test_a_crashing_generator_fails_the_evaluation_with_its_last_words(settings, tmp_path, launched):
    fake_generator(
        settings,
        tmp_path,
        ANSWERS,
        limit=2,
        done={"status": "failed", "error": "RuntimeError: out of memory"},
        exit_code=1,
        stderr="Traceback (most recent call last):\nRuntimeError: out of memory\n",
    )
    assert execute_evaluation(launched.pk) == RunStatus.FAILED
    launched.refresh_from_db()
    assert launched.status == RunStatus.FAILED
    assert launched.error.startswith("RuntimeError: out of memory Last output:")
    assert not launched.is_latest and launched.accuracy is None
    assert launched.done == 2, "what was answered is kept"
    assert Prediction.objects.filter(evaluation=launched).count() == 2


def test_a_generator_that_stops_early_fails_the_evaluation(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS, limit=3)  # says "completed" after 3 of 4 items
    assert execute_evaluation(launched.pk) == RunStatus.FAILED
    launched.refresh_from_db()
    assert "exited with code 0" in launched.error


def test_a_generator_that_dies_without_a_word_fails_the_evaluation(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS, done={}, exit_code=3)
    assert execute_evaluation(launched.pk) == RunStatus.FAILED
    launched.refresh_from_db()
    assert launched.error == "The generation process exited with code 3."


@pytest.mark.parametrize("ignore_term", [False, True], ids=["stops-on-sigterm", "deaf-to-sigterm"])
def test_cancelling_a_running_evaluation_stops_its_generator(settings, tmp_path, launched, monkeypatch, ignore_term):
    # A generator deaf to SIGTERM is killed after the (1 s) grace period instead.
    settings.RUN_KILL_GRACE_SECONDS = 1
    fake_generator(settings, tmp_path, ANSWERS, delay=2.0, ignore_term=ignore_term)

    def judge_then_cancel(answer: str, expected: str):
        Evaluation.objects.get(pk=launched.pk).cancel()  # as the API would, after the first answer
        return judge(answer, expected)

    monkeypatch.setattr("runs.evaluation.running.judge", judge_then_cancel)
    started = time.monotonic()
    assert execute_evaluation(launched.pk) == RunStatus.CANCELLED
    assert time.monotonic() - started < 6, "the child was stopped, not waited for (4 items × 2 s)"
    launched.refresh_from_db()
    assert launched.status == RunStatus.CANCELLED
    assert launched.error == "Cancelled by request."
    assert launched.finished_at is not None
    assert not launched.is_latest
    assert Prediction.objects.filter(evaluation=launched).count() == 1


def test_a_last_line_without_a_newline_still_counts(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS, end="")
    assert execute_evaluation(launched.pk) == RunStatus.COMPLETED
    launched.refresh_from_db()
    assert launched.done == 4


def test_an_evaluation_past_the_runs_timeout_is_stopped(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS, delay=2.0)
    type(launched.run).objects.filter(pk=launched.run_id).update(timeout_seconds=1)
    started = time.monotonic()
    assert execute_evaluation(launched.pk) == RunStatus.TIMEOUT
    assert time.monotonic() - started < 6
    launched.refresh_from_db()
    assert launched.status == RunStatus.TIMEOUT
    assert "Timed out" in launched.error


def test_an_unexpected_error_fails_the_evaluation_instead_of_leaving_it_running(
    settings, tmp_path, launched, monkeypatch
):
    fake_generator(settings, tmp_path, ANSWERS)

    def broken_judge(answer: str, expected: str):
        raise ZeroDivisionError("judge bug")

    monkeypatch.setattr("runs.evaluation.running.judge", broken_judge)
    assert execute_evaluation(launched.pk) == RunStatus.FAILED
    launched.refresh_from_db()
    assert launched.status == RunStatus.FAILED
    assert launched.error == "The evaluation failed: ZeroDivisionError: judge bug"


def test_a_run_whose_final_model_vanished_fails_to_prepare(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS)
    shutil.rmtree(Path(launched.run.output_dir) / "final")
    assert execute_evaluation(launched.pk) == RunStatus.FAILED
    launched.refresh_from_db()
    assert launched.error.startswith("Could not prepare the evaluation:")
    assert "no final model" in launched.error


def test_the_base_model_job_names_the_preset(settings, tmp_path, dataset, monkeypatch):
    record_evaluation_tasks(monkeypatch)
    fake_generator(settings, tmp_path, {})
    evaluation = launch_evaluation(completed_run(dataset), make_eval_set("quiz", [item(1)]), baseline=True)
    assert execute_evaluation(evaluation.pk) == RunStatus.COMPLETED
    job = (Path(evaluation.run.output_dir) / "evaluations" / str(evaluation.pk) / "job.json").read_text()
    assert '"model": {"kind": "preset", "name": "tiny"}' in job
    evaluation.refresh_from_db()
    assert (evaluation.accuracy, evaluation.baseline, evaluation.is_latest) == (0.0, True, True)


def test_only_a_pending_evaluation_is_executed(settings, tmp_path, launched):
    fake_generator(settings, tmp_path, ANSWERS)
    launched.cancel()
    assert execute_evaluation(launched.pk) == "not pending"
    assert not Prediction.objects.exists()
    assert execute_evaluation(987_654) == "not pending"
