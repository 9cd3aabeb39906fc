"""The evaluation API: launching (409 unless the run completed), listing, predictions, cancel."""

from __future__ import annotations

import pytest

from runs.choices import RunStatus
from runs.evaluation.judging import JUDGE_NAME, JUDGE_VERSION
from runs.evaluation.running import launch_evaluation
from runs.models import Evaluation
from runs.tests.eval_support import (
    completed_run,
    hand_evaluation,
    make_eval_set,
    record_evaluation_tasks,
    use_eval_folders,
)
from runs.tests.run_support import finished_run, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def sent(monkeypatch):
    return record_evaluation_tasks(monkeypatch)


@pytest.fixture
def quiz(db):
    return make_eval_set("quiz")


def test_evaluating_a_completed_run_queues_a_pending_evaluation(api, dataset, quiz, sent, user,
                                                                django_capture_on_commit_callbacks):
    run = completed_run(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/runs/{run.pk}/evaluate", {"eval_set": "quiz", "max_new_tokens": 32}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert (body["run"], body["eval_set"], body["baseline"], body["max_new_tokens"]) == (run.pk, "quiz", False, 32)
    assert (body["total"], body["done"], body["correct"], body["accuracy"]) == (4, 0, 0, None)
    assert (body["judge_name"], body["judge_version"]) == (JUDGE_NAME, JUDGE_VERSION)
    assert sent == [(body["id"],)], "queued by id after commit"
    evaluation = Evaluation.objects.get(pk=body["id"])
    assert evaluation.celery_task_id == "eval-task-1"
    assert evaluation.created_by == user


@pytest.mark.parametrize(
    ("status", "mode"),
    [
        (RunStatus.PENDING, "train"),
        (RunStatus.RUNNING, "train"),
        (RunStatus.FAILED, "train"),
        (RunStatus.CANCELLED, "train"),
        (RunStatus.TIMEOUT, "train"),
        (RunStatus.COMPLETED, "dry_run"),
    ],
)
def test_a_run_that_did_not_complete_training_cannot_be_evaluated(api, dataset, quiz, sent, status, mode):
    run = finished_run(dataset, status=status, mode=mode)
    response = api.post(f"/api/runs/{run.pk}/evaluate", {"eval_set": "quiz"}, format="json")
    assert response.status_code == 409
    assert "only completed training runs" in response.json()["detail"]
    assert not Evaluation.objects.exists()
    assert sent == []


def test_a_completed_run_without_its_final_model_cannot_be_evaluated(api, dataset, quiz):
    run = completed_run(dataset, files=False)
    response = api.post(f"/api/runs/{run.pk}/evaluate", {"eval_set": "quiz"}, format="json")
    assert response.status_code == 409
    assert "no final model" in response.json()["detail"]


def test_the_base_model_can_be_evaluated_at_any_time(api, dataset, quiz, sent):
    pending = make_run(dataset)
    response = api.post(f"/api/runs/{pending.pk}/evaluate", {"eval_set": "quiz", "baseline": True}, format="json")
    assert response.status_code == 201
    assert response.json()["baseline"] is True
    assert Evaluation.objects.get().baseline


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "eval_set"),
        ({"eval_set": "missing"}, "eval_set"),
        ({"eval_set": "quiz", "max_new_tokens": 0}, "max_new_tokens"),
        ({"eval_set": "quiz", "max_new_tokens": 1025}, "max_new_tokens"),
        ({"eval_set": "quiz", "max_new_tokens": "many"}, "max_new_tokens"),
        ({"eval_set": "quiz", "baseline": "perhaps"}, "baseline"),
    ],
)
def test_bad_evaluate_requests_name_the_field(api, dataset, quiz, body, field):
    run = completed_run(dataset)
    response = api.post(f"/api/runs/{run.pk}/evaluate", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Evaluation.objects.exists()


def test_evaluating_a_missing_run_is_404(api, quiz):
    assert api.post("/api/runs/999999/evaluate", {"eval_set": "quiz"}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_an_evaluation_launched_while_the_broker_is_down_waits_pending(api, dataset, broker_down):
    make_eval_set("quiz")
    run = completed_run(dataset)
    response = api.post(f"/api/runs/{run.pk}/evaluate", {"eval_set": "quiz"}, format="json")
    assert response.status_code == 201
    assert response.json()["awaiting_broker"] is True
    evaluation = Evaluation.objects.get()
    assert evaluation.status == RunStatus.PENDING
    assert evaluation.queued_at is None and evaluation.finished_at is None


def test_evaluations_are_listed_newest_first_and_by_run(api, dataset, quiz):
    a = completed_run(dataset)
    b = completed_run(dataset)
    first = hand_evaluation(a, quiz, {"q1": True, "q2": False})
    second = hand_evaluation(b, quiz, {"q1": True})
    listed = api.get("/api/evaluations").json()
    assert [e["id"] for e in listed["results"]] == [second.pk, first.pk]
    only_a = api.get("/api/evaluations", {"run": a.pk}).json()
    assert [e["id"] for e in only_a["results"]] == [first.pk]
    detail = api.get(f"/api/evaluations/{first.pk}").json()
    assert (detail["status"], detail["accuracy"], detail["is_latest"]) == ("completed", 0.5, True)
    assert detail["scorecard"]["overall"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert api.get("/api/evaluations/999999").status_code == 404


def test_predictions_list_every_answer_or_only_the_wrong_ones(api, dataset, quiz):
    evaluation = hand_evaluation(completed_run(dataset), quiz, {"q1": True, "q2": ("5", False), "q3": True})
    every = api.get(f"/api/evaluations/{evaluation.pk}/predictions")
    assert every.status_code == 200
    rows = every.json()
    assert [r["item"]["id"] for r in rows] == ["q1", "q2", "q3"]
    assert rows[1] == {
        "item": {"id": "q2", "prompt": "What is 2 + 2?", "expected_answer": "4", "category": "arith",
                 "difficulty": "hard", "section": "core"},
        "raw_output": "Reasoning:\n1. think\nAnswer: 5",
        "extracted_answer": "5",
        "extraction": "answer_marker",
        "correct": False,
        "match": "",
        "latency_ms": 20.0,
    }
    for flag in ("1", "true", "yes", "on", "True"):
        wrong = api.get(f"/api/evaluations/{evaluation.pk}/predictions", {"wrong_only": flag}).json()
        assert [r["item"]["id"] for r in wrong] == ["q2"]
    for flag in ("0", "false", "no", ""):
        assert len(api.get(f"/api/evaluations/{evaluation.pk}/predictions", {"wrong_only": flag}).json()) == 3
    bad = api.get(f"/api/evaluations/{evaluation.pk}/predictions", {"wrong_only": "abc"})
    assert bad.status_code == 400
    assert "wrong_only" in bad.json()


def test_the_predictions_cost_a_fixed_number_of_queries(api, dataset, quiz, django_assert_max_num_queries):
    evaluation = hand_evaluation(completed_run(dataset), quiz, {"q1": True, "q2": False, "q3": True, "q4": True})
    with django_assert_max_num_queries(3):
        assert len(api.get(f"/api/evaluations/{evaluation.pk}/predictions").json()) == 4


def test_cancelling_a_pending_evaluation_ends_it_at_once(api, user, dataset, quiz, sent):
    evaluation = launch_evaluation(completed_run(dataset), quiz, user=user)
    response = api.post(f"/api/evaluations/{evaluation.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.CANCELLED
    assert evaluation.finished_at is not None
    assert evaluation.error == "Cancelled before it started."
    again = api.post(f"/api/evaluations/{evaluation.pk}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_cancelling_a_running_evaluation_asks_its_worker(api, user, dataset, quiz):
    evaluation = hand_evaluation(completed_run(dataset), quiz, {}, finish=False, created_by=user)  # running
    response = api.post(f"/api/evaluations/{evaluation.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancel_requested"


def test_a_finished_evaluation_cannot_be_cancelled(api, user, dataset, quiz):
    evaluation = hand_evaluation(completed_run(dataset), quiz, {"q1": True}, created_by=user)
    response = api.post(f"/api/evaluations/{evaluation.pk}/cancel")
    assert response.status_code == 409
    assert "already completed" in response.json()["detail"]


def test_the_api_needs_a_login(client, dataset, quiz):
    run = completed_run(dataset)
    assert client.post(f"/api/runs/{run.pk}/evaluate", {"eval_set": "quiz"}).status_code in (401, 403)
    assert client.get("/api/evaluations").status_code in (401, 403)
    assert not Evaluation.objects.exists()
