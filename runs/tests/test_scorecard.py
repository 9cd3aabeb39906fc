"""Scorecards: accuracy overall and per category / section / difficulty, from stored predictions."""

from __future__ import annotations

import pytest

from runs.choices import RunStatus
from runs.evaluation.running import complete, compute_scorecard
from runs.models import Evaluation
from runs.tests.eval_support import completed_run, hand_evaluation, item, make_eval_set, use_eval_folders

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


def _six_items():
    return make_eval_set(
        "six",
        [
            item(1, category="arith", section="core", difficulty="easy"),
            item(2, category="arith", section="core", difficulty="hard"),
            item(3, category="arith", section="extra", difficulty="easy"),
            item(4, category="words", section="extra", difficulty="easy"),
            item(5, category="words", difficulty="hard"),
            item(6),
        ],
    )


def test_the_scorecard_counts_overall_and_per_group(dataset):
    run = completed_run(dataset)
    eval_set = _six_items()
    verdicts = {"q1": True, "q2": False, "q3": True, "q4": False, "q5": True, "q6": False}
    evaluation = hand_evaluation(run, eval_set, verdicts, finish=False)

    card = compute_scorecard(evaluation)

    assert card["overall"] == {"n": 6, "correct": 3, "accuracy": 0.5}
    assert card["category"] == {
        "—": {"n": 1, "correct": 0, "accuracy": 0.0},
        "arith": {"n": 3, "correct": 2, "accuracy": 0.6667},
        "words": {"n": 2, "correct": 1, "accuracy": 0.5},
    }
    assert card["section"] == {
        "—": {"n": 2, "correct": 1, "accuracy": 0.5},
        "core": {"n": 2, "correct": 1, "accuracy": 0.5},
        "extra": {"n": 2, "correct": 1, "accuracy": 0.5},
    }
    assert card["difficulty"] == {
        "—": {"n": 1, "correct": 0, "accuracy": 0.0},
        "easy": {"n": 3, "correct": 2, "accuracy": 0.6667},
        "hard": {"n": 2, "correct": 1, "accuracy": 0.5},
    }
    assert card["latency_ms_mean"] == 35.0  # 10, 20, … 60 ms


def test_complete_scores_the_evaluation_and_makes_it_the_latest(dataset):
    run = completed_run(dataset)
    eval_set = _six_items()
    evaluation = hand_evaluation(run, eval_set, {"q1": True, "q2": True, "q3": False}, finish=False)
    assert evaluation.status == RunStatus.RUNNING

    complete(evaluation)

    evaluation.refresh_from_db()
    assert evaluation.status == RunStatus.COMPLETED
    assert evaluation.finished_at is not None
    assert evaluation.is_latest
    assert (evaluation.done, evaluation.correct, evaluation.accuracy) == (3, 2, 0.6667)
    assert evaluation.scorecard == compute_scorecard(evaluation)
    assert evaluation.total == 6  # the eval set's size, even when fewer items were answered


def test_an_evaluation_without_predictions_has_no_accuracy(dataset):
    run = completed_run(dataset)
    evaluation = hand_evaluation(run, _six_items(), {})
    assert evaluation.status == RunStatus.COMPLETED
    assert evaluation.accuracy is None
    assert evaluation.scorecard["overall"] == {"n": 0, "correct": 0, "accuracy": None}
    assert evaluation.scorecard["category"] == {}
    assert evaluation.scorecard["latency_ms_mean"] is None


def test_only_the_newest_completed_evaluation_of_a_run_on_a_set_is_latest(dataset):
    run = completed_run(dataset)
    other_run = completed_run(dataset)
    eval_set = _six_items()
    other_set = make_eval_set("other")
    first = hand_evaluation(run, eval_set, {"q1": True})
    base = hand_evaluation(run, eval_set, {"q1": False}, baseline=True)
    elsewhere = hand_evaluation(run, other_set, {"q1": True})
    neighbour = hand_evaluation(other_run, eval_set, {"q1": True})
    running = hand_evaluation(run, eval_set, {"q1": False}, finish=False)

    # A running evaluation does not take the place of the completed one.
    assert Evaluation.objects.get(pk=first.pk).is_latest
    assert not Evaluation.objects.get(pk=running.pk).is_latest

    second = hand_evaluation(run, eval_set, {"q1": False, "q2": True})

    latest = set(Evaluation.objects.filter(is_latest=True).values_list("pk", flat=True))
    # The baseline, another eval set and another run each keep their own latest.
    assert latest == {second.pk, base.pk, elsewhere.pk, neighbour.pk}
