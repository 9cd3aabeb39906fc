"""Two runs compared item by item on an eval set: improved, regressed, unchanged."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runs.evaluation.leaderboard import compare_runs
from runs.evaluation.running import EvaluationConflict
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, use_eval_folders

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def pair(dataset):
    """On `quiz` (q1–q4): A right on q1, q2; B right on q2, q3 (so q3 improved, q1 regressed,
    q2 and q4 unchanged). A's older evaluation (all wrong) must be ignored."""
    quiz = make_eval_set("quiz")
    a = completed_run(dataset)
    b = completed_run(dataset)
    hand_evaluation(a, quiz, {"q1": False, "q2": False, "q3": False, "q4": False}, age=timedelta(hours=1))
    hand_evaluation(a, quiz, {"q1": True, "q2": True, "q3": ("9", False), "q4": False})
    hand_evaluation(b, quiz, {"q1": ("3", False), "q2": True, "q3": True, "q4": False})
    return quiz, a, b


def test_compare_counts_improved_regressed_and_unchanged_items(pair):
    quiz, a, b = pair
    result = compare_runs(quiz, a, b)
    assert result["counts"] == {"improved": 1, "regressed": 1, "unchanged": 2}
    assert result["a"].accuracy == 0.5 and result["b"].accuracy == 0.5
    by_id = {row["item_id"]: row for row in result["items"]}
    assert [row["item_id"] for row in result["items"]] == ["q1", "q2", "q3", "q4"]  # eval set order
    assert by_id["q1"] == {
        "item_id": "q1",
        "prompt": "What is 1 + 1?",
        "expected_answer": "2",
        "a_answer": "2",
        "a_correct": True,
        "b_answer": "3",
        "b_correct": False,
        "change": "regressed",
    }
    assert (by_id["q3"]["a_answer"], by_id["q3"]["b_answer"], by_id["q3"]["change"]) == ("9", "6", "improved")
    assert by_id["q2"]["change"] == by_id["q4"]["change"] == "unchanged"


def test_compare_is_symmetric(pair):
    quiz, a, b = pair
    assert compare_runs(quiz, b, a)["counts"] == {"improved": 1, "regressed": 1, "unchanged": 2}
    same = compare_runs(quiz, a, a)
    assert same["counts"] == {"improved": 0, "regressed": 0, "unchanged": 4}


def test_an_item_one_run_did_not_answer_counts_as_wrong(dataset):
    quiz = make_eval_set("quiz")
    a = completed_run(dataset)
    b = completed_run(dataset)
    hand_evaluation(a, quiz, {"q1": True})
    hand_evaluation(b, quiz, {"q1": True, "q2": True})
    result = compare_runs(quiz, a, b)
    assert result["counts"] == {"improved": 1, "regressed": 0, "unchanged": 1}
    q2 = result["items"][1]
    assert (q2["item_id"], q2["a_answer"], q2["a_correct"]) == ("q2", "", False)


def test_compare_needs_a_completed_evaluation_of_both_runs(dataset):
    quiz = make_eval_set("quiz")
    a = completed_run(dataset)
    b = completed_run(dataset)
    hand_evaluation(a, quiz, {"q1": True})
    hand_evaluation(b, quiz, {"q1": True}, finish=False)
    with pytest.raises(EvaluationConflict, match=f"run {b.pk}"):
        compare_runs(quiz, a, b)


def test_the_api_compares_two_runs(api, pair):
    _, a, b = pair
    response = api.get("/api/evaluations/compare", {"eval_set": "quiz", "a": a.pk, "b": b.pk})
    assert response.status_code == 200
    body = response.json()
    assert body["eval_set"] == "quiz"
    assert body["a"]["run"] == a.pk and body["b"]["run"] == b.pk
    assert body["a"]["accuracy"] == 0.5
    assert body["counts"] == {"improved": 1, "regressed": 1, "unchanged": 2}
    assert [(r["item_id"], r["change"]) for r in body["items"]] == [
        ("q1", "regressed"),
        ("q2", "unchanged"),
        ("q3", "improved"),
        ("q4", "unchanged"),
    ]


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {"eval_set", "a", "b"}),
        ({"eval_set": "quiz", "a": "x", "b": "1"}, {"a"}),
        ({"eval_set": "quiz", "a": "999999", "b": "999998"}, {"a", "b"}),
        ({"eval_set": "nope", "a": "1", "b": "1"}, {"eval_set"}),
        ({"eval_set": "quiz", "a": "9" * 40, "b": "-1"}, {"a", "b"}),
    ],
)
def test_the_api_names_bad_parameters(api, pair, params, fields):
    response = api.get("/api/evaluations/compare", params)
    assert response.status_code == 400
    assert fields <= set(response.json())


def test_the_api_answers_409_when_a_run_has_no_evaluation(api, pair, dataset):
    _, a, _ = pair
    fresh = completed_run(dataset)
    response = api.get("/api/evaluations/compare", {"eval_set": "quiz", "a": a.pk, "b": fresh.pk})
    assert response.status_code == 409
    assert str(fresh.pk) in response.json()["detail"]


def test_the_page_shows_counts_and_filters_by_change(page, pair):
    _, a, b = pair
    response = page.get("/evaluations/compare/", {"eval_set": "quiz", "a": a.pk, "b": b.pk})
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="value" id="improved">1</span>' in html
    assert '<span class="value" id="regressed">1</span>' in html
    assert html.count('<tr class="unchanged">') == 2

    regressed = page.get("/evaluations/compare/", {"eval_set": "quiz", "a": a.pk, "b": b.pk, "change": "regressed"})
    html = regressed.content.decode()
    assert html.count('<tr class="regressed">') == 1
    assert '<tr class="unchanged">' not in html and '<tr class="improved">' not in html


def test_the_page_explains_what_is_missing(page, pair, dataset):
    _, a, _ = pair
    assert "Pick an eval set and two runs." in page.get("/evaluations/compare/", {"a": "1"}).content.decode()
    fresh = completed_run(dataset)
    html = page.get("/evaluations/compare/", {"eval_set": "quiz", "a": a.pk, "b": fresh.pk}).content.decode()
    assert f"No completed evaluation on quiz for run {fresh.pk}" in html
    html = page.get("/evaluations/compare/", {"eval_set": "quiz", "a": a.pk, "b": 999999}).content.decode()
    assert "No such run." in html
    empty = page.get("/evaluations/compare/")
    assert empty.status_code == 200
    assert "Compare two runs item by item" in empty.content.decode()
