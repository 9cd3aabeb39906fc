"""GET/DELETE /api/traces/{id}, POST /api/traces/{id}/score and GET /api/traces/compare."""

from __future__ import annotations

import pytest

from traces.models import Trace, TraceScore
from traces.tests.factories import make_trace, trace_document

pytestmark = pytest.mark.django_db

URL = "/api/traces"
BAD_IDS = ["0", "424242", "abc", "1.5", "-1", "99999999999999999999"]


def steps_of(*lengths: int) -> list[dict[str, object]]:
    return [{"i": i, "type": "t", "content": "x" * n} for i, n in enumerate(lengths)]


def test_detail_returns_the_full_trace_with_scores(api):
    doc = trace_document(7, meta={"source": "s", "tags": ["a"], "extra": {"nested": [1, 2]}})
    created = api.post(URL, doc, format="json").json()
    api.post(f"{URL}/{created['id']}/score", {"criteria": "baseline"}, format="json")

    body = api.get(f"{URL}/{created['id']}").json()

    assert body["id"] == created["id"]
    assert body["prompt"] == doc["prompt"]
    assert body["final_answer"] == doc["final_answer"]
    assert body["trace_version"] == "1.0"
    assert body["steps"] == doc["steps"]
    assert body["meta"] == doc["meta"]
    assert body["source"] == "s"
    assert body["tags"] == ["a"]
    assert body["step_count"] == 3
    assert [s["criteria"] for s in body["scores"]] == ["baseline"]
    assert {"score", "details", "updated_at"} <= set(body["scores"][0])


def test_an_unscored_trace_has_no_scores(api):
    trace = make_trace()

    assert api.get(f"{URL}/{trace.pk}").json()["scores"] == []


@pytest.mark.parametrize("pk", BAD_IDS)
def test_detail_of_an_unknown_or_malformed_id_is_a_404(api, pk):
    make_trace()

    response = api.get(f"{URL}/{pk}")

    assert response.status_code == 404


def test_an_unknown_id_answers_a_json_404(api):
    response = api.get(f"{URL}/424242")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_delete_removes_the_trace_and_its_scores(api, user):
    trace = make_trace(created_by=user)
    trace.score()
    other = make_trace()

    response = api.delete(f"{URL}/{trace.pk}")

    assert response.status_code == 204
    assert api.get(f"{URL}/{trace.pk}").status_code == 404
    assert api.delete(f"{URL}/{trace.pk}").status_code == 404
    assert not TraceScore.objects.filter(trace_id=trace.pk).exists()
    assert list(Trace.objects.values_list("pk", flat=True)) == [other.pk]


@pytest.mark.parametrize("pk", BAD_IDS)
def test_delete_of_an_unknown_or_malformed_id_is_a_404(api, pk):
    make_trace()

    assert api.delete(f"{URL}/{pk}").status_code == 404
    assert Trace.objects.count() == 1


def test_traces_cannot_be_edited(api):
    trace = make_trace()

    assert api.put(f"{URL}/{trace.pk}", trace_document(1), format="json").status_code == 405
    assert api.patch(f"{URL}/{trace.pk}", {"prompt": "x"}, format="json").status_code == 405


@pytest.mark.parametrize(
    ("lengths", "expected", "step_points", "length_points"),
    [
        # 4 steps → 50·4/10 = 20; mean (100+200+300+400)/4 = 250 chars → 50·250/500 = 25.
        ((100, 200, 300, 400), 45.0, 20.0, 25.0),
        # 1 step → 5; 50 chars → 5.
        ((50,), 10.0, 5.0, 5.0),
        # 12 steps are capped at 10 → 50; 600 chars mean is capped at 500 → 50.
        ((600,) * 12, 100.0, 50.0, 50.0),
        # 10 steps → 50; mean (1+2) ... 3 chars → 50·3/500 = 0.3.
        ((3,) * 10, 50.3, 50.0, 0.3),
        # 3 steps → 15; mean (10+20+31)/3 = 20.333… → 2.0333… → rounded to 2 decimals.
        ((10, 20, 31), 17.03, 15.0, 2.03),
    ],
)
def test_baseline_score_is_stored_with_its_details(api, lengths, expected, step_points, length_points):
    trace = make_trace(steps=steps_of(*lengths))

    response = api.post(f"{URL}/{trace.pk}/score", {"criteria": "baseline"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["criteria"] == "baseline"
    assert body["score"] == pytest.approx(expected)
    details = body["details"]
    assert details["step_count"] == len(lengths)
    assert details["mean_step_chars"] == pytest.approx(round(sum(lengths) / len(lengths), 2))
    assert details["step_points"] == pytest.approx(step_points)
    assert details["length_points"] == pytest.approx(length_points)
    stored = TraceScore.objects.get(trace=trace, criteria="baseline")
    assert stored.score == pytest.approx(expected)
    assert stored.details == details


def test_scoring_without_a_body_uses_the_baseline(api):
    trace = make_trace(steps=steps_of(500, 500))

    response = api.post(f"{URL}/{trace.pk}/score")

    assert response.status_code == 200
    assert response.json()["criteria"] == "baseline"
    assert response.json()["score"] == pytest.approx(60.0)


def test_scoring_twice_keeps_one_score_per_criteria(api):
    trace = make_trace()

    api.post(f"{URL}/{trace.pk}/score", {"criteria": "baseline"}, format="json")
    api.post(f"{URL}/{trace.pk}/score", {"criteria": "baseline"}, format="json")

    assert TraceScore.objects.filter(trace=trace).count() == 1


@pytest.mark.parametrize("criteria", ["nonsense", "", "BASELINE", 5])
def test_an_unknown_criteria_is_a_400(api, criteria):
    trace = make_trace()

    response = api.post(f"{URL}/{trace.pk}/score", {"criteria": criteria}, format="json")

    assert response.status_code == 400
    assert "criteria" in response.json()
    assert not TraceScore.objects.exists()


@pytest.mark.parametrize("pk", BAD_IDS)
def test_scoring_an_unknown_trace_is_a_404(api, pk):
    assert api.post(f"{URL}/{pk}/score", {"criteria": "baseline"}, format="json").status_code == 404


def test_compare_returns_both_traces_with_their_scores(api):
    base = make_trace(steps=steps_of(100, 200, 300, 400))
    other = make_trace(steps=steps_of(50))

    response = api.get(f"{URL}/compare", {"base": base.pk, "other": other.pk})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["base"]["id"] == base.pk
    assert body["other"]["id"] == other.pk
    assert body["base"]["steps"] == base.steps
    assert [(s["criteria"], s["score"]) for s in body["base"]["scores"]] == [("baseline", 45.0)]
    assert [(s["criteria"], s["score"]) for s in body["other"]["scores"]] == [("baseline", 10.0)]


def test_compare_of_a_trace_with_itself_works(api):
    trace = make_trace()

    response = api.get(f"{URL}/compare", {"base": trace.pk, "other": trace.pk})

    assert response.status_code == 200
    assert response.json()["base"]["id"] == response.json()["other"]["id"] == trace.pk


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({}, {"base", "other"}),
        ({"base": "1"}, {"other"}),
        ({"other": "1"}, {"base"}),
        ({"base": "x", "other": "1"}, {"base"}),
        ({"base": "1", "other": "-2"}, {"other"}),
        ({"base": "1.0", "other": "1"}, {"base"}),
        ({"base": "²", "other": "1"}, {"base"}),
        ({"base": "1", "other": "١"}, {"other"}),
        ({"base": "", "other": ""}, {"base", "other"}),
    ],
)
def test_compare_with_missing_or_bad_ids_is_a_400_naming_them(api, params, bad):
    make_trace()

    response = api.get(f"{URL}/compare", params)

    assert response.status_code == 400
    assert set(response.json()) == bad


@pytest.mark.parametrize("missing", ["424242", "99999999999999999999", "9" * 5000])
def test_compare_with_an_unknown_id_is_a_404(api, missing):
    trace = make_trace()

    assert api.get(f"{URL}/compare", {"base": trace.pk, "other": missing}).status_code == 404
    assert api.get(f"{URL}/compare", {"base": missing, "other": trace.pk}).status_code == 404
