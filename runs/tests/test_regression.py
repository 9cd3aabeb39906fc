"""Regression baselines: a reference run's metric with a direction and a tolerance, checked against later runs."""

from __future__ import annotations

import re

import pytest

from runs.evaluation.running import EvaluationConflict
from runs.models import Direction, RegressionBaseline
from runs.regression.gates import check_regression, create_baseline
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, use_eval_folders

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


def _verdicts(correct: int) -> dict[str, bool]:
    return {f"q{n}": n <= correct for n in range(1, 5)}


@pytest.fixture
def quiz(db):
    return make_eval_set("quiz")


@pytest.fixture
def evaluated(dataset, quiz):
    """Runs whose latest evaluation on `quiz` got 0–4 of 4 right, by that count."""

    def make(correct: int):
        run = completed_run(dataset)
        hand_evaluation(run, quiz, _verdicts(correct))
        return run

    return make


def test_a_baseline_takes_the_reference_runs_latest_value(evaluated, quiz):
    reference = evaluated(3)
    baseline = create_baseline("gate", reference, quiz)
    assert (baseline.metric, baseline.direction, baseline.tolerance_pct, baseline.value) == (
        "accuracy",
        Direction.HIGHER,
        0.0,
        0.75,
    )
    error_rate = create_baseline("errors", reference, quiz, metric="error_rate", direction="lower")
    assert error_rate.value == 0.25


def test_higher_is_better_passes_at_or_above_the_tolerance_and_fails_below(evaluated, quiz):
    baseline = create_baseline("gate", evaluated(4), quiz, tolerance_pct=25.0)  # 1.0, threshold 0.75
    better_or_equal = check_regression(baseline, evaluated(4))
    assert better_or_equal["passed"] is True
    assert (better_or_equal["baseline_value"], better_or_equal["current_value"], better_or_equal["delta"]) == (
        1.0,
        1.0,
        0.0,
    )
    within = check_regression(baseline, evaluated(3))  # 0.75: exactly at the threshold
    assert within["passed"] is True
    assert within["threshold"] == 0.75
    assert within["delta"] == -0.25
    worse = check_regression(baseline, evaluated(2))
    assert worse["passed"] is False
    assert (worse["current_value"], worse["delta"]) == (0.5, -0.5)


def test_without_tolerance_any_drop_is_a_regression(evaluated, quiz):
    baseline = create_baseline("strict", evaluated(3), quiz)
    assert check_regression(baseline, evaluated(3))["passed"] is True
    assert check_regression(baseline, evaluated(4))["passed"] is True
    assert check_regression(baseline, evaluated(2))["passed"] is False


def test_lower_is_better_for_the_error_rate(evaluated, quiz):
    baseline = create_baseline(
        "errors", evaluated(2), quiz, metric="error_rate", direction="lower", tolerance_pct=50.0
    )  # error rate 0.5; may rise to 0.75
    assert baseline.value == 0.5
    fewer = check_regression(baseline, evaluated(4))
    assert fewer["passed"] is True
    assert (fewer["current_value"], fewer["delta"]) == (0.0, -0.5)
    assert check_regression(baseline, evaluated(1))["passed"] is True  # 0.75: at the threshold
    more = check_regression(baseline, evaluated(0))
    assert more["passed"] is False
    assert (more["current_value"], more["threshold"], more["delta"]) == (1.0, 0.75, 0.5)


def test_lower_is_better_for_accuracy_flags_a_rise(evaluated, quiz):
    baseline = create_baseline("inverse", evaluated(2), quiz, direction="lower", tolerance_pct=10.0)
    assert check_regression(baseline, evaluated(2))["passed"] is True
    assert check_regression(baseline, evaluated(3))["passed"] is False


def test_the_check_uses_the_runs_latest_evaluation(dataset, quiz):
    reference = completed_run(dataset)
    hand_evaluation(reference, quiz, _verdicts(3))
    baseline = create_baseline("gate", reference, quiz)
    run = completed_run(dataset)
    hand_evaluation(run, quiz, _verdicts(4))
    latest = hand_evaluation(run, quiz, _verdicts(1))
    result = check_regression(baseline, run)
    assert result["evaluation"] == latest.pk
    assert result["passed"] is False


def test_baselines_and_checks_need_a_completed_evaluation(dataset, quiz):
    unevaluated = completed_run(dataset)
    with pytest.raises(EvaluationConflict):
        create_baseline("gate", unevaluated, quiz)
    reference = completed_run(dataset)
    hand_evaluation(reference, quiz, _verdicts(2))
    baseline = create_baseline("gate", reference, quiz)
    hand_evaluation(unevaluated, quiz, _verdicts(4), finish=False)
    with pytest.raises(EvaluationConflict, match=f"Run {unevaluated.pk} has no completed evaluation on quiz"):
        check_regression(baseline, unevaluated)


def test_the_api_creates_lists_checks_and_deletes_baselines(maintainer_api, evaluated):
    reference = evaluated(3)
    response = maintainer_api.post(
        "/api/regression/baselines",
        {"name": "ci-gate", "run": reference.pk, "eval_set": "quiz", "tolerance_pct": 10},
        format="json",
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert {k: created[k] for k in ("name", "run", "eval_set", "metric", "direction", "tolerance_pct", "value")} == {
        "name": "ci-gate",
        "run": reference.pk,
        "eval_set": "quiz",
        "metric": "accuracy",
        "direction": "higher",
        "tolerance_pct": 10.0,
        "value": 0.75,
    }
    response = maintainer_api.post(
        "/api/regression/baselines",
        {"name": "ci-errors", "run": reference.pk, "eval_set": "quiz", "metric": "error_rate", "direction": "lower"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["value"] == 0.25

    listed = maintainer_api.get("/api/regression/baselines").json()
    assert [b["name"] for b in listed] == ["ci-errors", "ci-gate"]
    assert maintainer_api.get("/api/regression/baselines/ci-gate").json()["value"] == 0.75

    worse = evaluated(2)
    check = maintainer_api.get("/api/regression/baselines/ci-gate/check", {"run": worse.pk})
    assert check.status_code == 200
    body = check.json()
    assert body["passed"] is False
    assert (body["baseline_value"], body["current_value"], body["delta"]) == (0.75, 0.5, -0.25)
    assert body["threshold"] == pytest.approx(0.675)
    posted = maintainer_api.post("/api/regression/baselines/ci-gate/check", {"run": evaluated(4).pk}, format="json")
    assert posted.status_code == 200
    assert posted.json()["passed"] is True
    assert maintainer_api.get("/api/regression/baselines/ci-errors/check", {"run": worse.pk}).json()["passed"] is False

    assert maintainer_api.delete("/api/regression/baselines/ci-gate").status_code == 204
    assert list(RegressionBaseline.objects.values_list("name", flat=True)) == ["ci-errors"]
    assert maintainer_api.get("/api/regression/baselines/ci-gate/check", {"run": worse.pk}).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Not A Slug"}, "name"),
        ({"name": ""}, "name"),
        ({"run": 999999}, "run"),
        ({"run": "abc"}, "run"),
        ({"eval_set": "missing"}, "eval_set"),
        ({"metric": "f1"}, "metric"),
        ({"direction": "sideways"}, "direction"),
        ({"tolerance_pct": -1}, "tolerance_pct"),
        ({"tolerance_pct": 101}, "tolerance_pct"),
        ({"tolerance_pct": "lots"}, "tolerance_pct"),
    ],
)
def test_the_api_names_bad_fields(maintainer_api, evaluated, change, field):
    reference = evaluated(3)
    data = {"name": "gate", "run": reference.pk, "eval_set": "quiz", **change}
    response = maintainer_api.post("/api/regression/baselines", data, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not RegressionBaseline.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Not A Slug"}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"run": "999999"}, "run"),
        ({"run": "9" * 30}, "run"),
        ({"eval_set": "missing"}, "eval_set"),
        ({"tolerance_pct": "101"}, "tolerance_pct"),
        ({"metric": "f1"}, "metric"),
        ({"direction": "sideways"}, "direction"),
        ({"tolerance_pct": "-1"}, "tolerance_pct"),
        ({"tolerance_pct": "nan"}, "tolerance_pct"),
    ],
)
def test_the_page_names_the_same_bad_fields_as_the_api(maintainer_page, maintainer_api, evaluated, change, field):
    data = {"name": "gate", "run": evaluated(3).pk, "eval_set": "quiz", **change}
    page = maintainer_page.post("/regression/", data)
    assert page.status_code == 400
    assert f"<li>{field}: " in page.content.decode()
    api = maintainer_api.post("/api/regression/baselines", data, format="json")
    assert api.status_code == 400
    assert list(api.json()) == [field]
    assert not RegressionBaseline.objects.exists()


def test_the_api_refuses_a_duplicate_name_and_an_unevaluated_run(maintainer_api, evaluated, dataset):
    reference = evaluated(3)
    data = {"name": "gate", "run": reference.pk, "eval_set": "quiz"}
    assert maintainer_api.post("/api/regression/baselines", data, format="json").status_code == 201
    duplicate = maintainer_api.post("/api/regression/baselines", data, format="json")
    assert duplicate.status_code == 400
    assert "name" in duplicate.json()
    fresh = completed_run(dataset)
    response = maintainer_api.post(
        "/api/regression/baselines", {**data, "name": "other", "run": fresh.pk}, format="json"
    )
    assert response.status_code == 409
    assert "no completed evaluation" in response.json()["detail"]


def test_the_api_check_needs_an_existing_evaluated_run(api, evaluated, dataset, quiz):
    create_baseline("gate", evaluated(3), quiz)
    for params in ({}, {"run": "x"}, {"run": 999999}, {"run": "9" * 30}):
        response = api.get("/api/regression/baselines/gate/check", params)
        assert response.status_code == 400
        assert "run" in response.json()
    response = api.get("/api/regression/baselines/gate/check", {"run": completed_run(dataset).pk})
    assert response.status_code == 409
    assert api.get("/api/regression/baselines/nope/check", {"run": 1}).status_code == 404


def test_a_baselines_reference_run_cannot_be_deleted_from_under_it(maintainer_api, evaluated, quiz):
    reference = evaluated(3)
    create_baseline("gate", reference, quiz)
    response = maintainer_api.delete(f"/api/runs/{reference.pk}")
    assert response.status_code == 409
    assert "gate" in response.json()["detail"]
    assert RegressionBaseline.objects.filter(run=reference).exists()


def test_the_page_creates_checks_and_deletes_baselines(maintainer_page, evaluated, quiz):
    reference = evaluated(3)
    response = maintainer_page.post(
        "/regression/",
        {"name": "page-gate", "run": reference.pk, "eval_set": "quiz", "metric": "accuracy",
         "direction": "higher", "tolerance_pct": "0"},
    )
    assert response.status_code == 302
    assert response.url == "/regression/"
    listing = maintainer_page.get("/regression/").content.decode()
    assert "page-gate" in listing and "0.7500" in listing

    worse = evaluated(1)
    html = maintainer_page.get("/regression/", {"baseline": "page-gate", "run": worse.pk}).content.decode()
    assert "REGRESSION" in html
    assert f"baseline 0.7500, run #{worse.pk} 0.2500, delta -0.5000" in html
    html = maintainer_page.get("/regression/", {"baseline": "page-gate", "run": evaluated(4).pk}).content.decode()
    assert "<strong>PASS</strong>" in html
    html = maintainer_page.get("/regression/", {"baseline": "nope", "run": worse.pk}).content.decode()
    assert "No such baseline or run." in html

    response = maintainer_page.post("/regression/", {"action": "delete", "name": "page-gate"})
    assert response.status_code == 302
    assert not RegressionBaseline.objects.exists()


def test_the_page_shows_form_errors(maintainer_page, evaluated, dataset, quiz):
    response = maintainer_page.post("/regression/", {"name": "Bad Name", "run": "", "eval_set": "quiz"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "name:" in html and "run:" in html
    fresh = completed_run(dataset)
    response = maintainer_page.post("/regression/", {"name": "gate", "run": fresh.pk, "eval_set": "quiz"})
    assert response.status_code == 400
    assert "no completed evaluation on quiz" in response.content.decode()
    assert not RegressionBaseline.objects.exists()


def test_the_page_keeps_the_checked_run_and_baseline_selected(maintainer_page, evaluated, quiz):
    for name in ("first-gate", "second-gate"):
        create_baseline(name, evaluated(3), quiz, metric="accuracy", direction=Direction.HIGHER, tolerance_pct=0)
    run = evaluated(2)
    html = maintainer_page.get("/regression/", {"baseline": "second-gate", "run": run.pk}).content.decode()
    assert "REGRESSION" in html
    assert '<option value="second-gate" selected>' in html
    assert '<option value="first-gate" >' in html
    assert re.search(rf'<input name="run"[^>]* list="evaluated-runs"[^>]* value="{run.pk}">', html)
