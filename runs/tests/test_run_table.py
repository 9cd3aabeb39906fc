"""The runs list as an experiment tracker: names and notes, sortable columns, accuracy per eval set, filters."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from runs.choices import RunStatus
from runs.models import Run
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set
from runs.tests.run_support import build_arithmetic_dataset

pytestmark = pytest.mark.django_db


def _ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="run-(\d+)"', html)]


@pytest.fixture
def three_runs(user: Any) -> list[Run]:
    dataset = build_arithmetic_dataset(count=8)
    runs = []
    now = timezone.now()
    for n, (loss, minutes) in enumerate([(0.9, 5), (0.2, 30), (0.5, 1)]):
        run = completed_run(dataset, created_by=user)
        run.summary = {"steps_done": 10 * (n + 1), "final_train_loss": loss}
        run.started_at = now - timedelta(minutes=minutes)
        run.finished_at = now
        run.created_at = now - timedelta(hours=3 - n)
        run.save()
        runs.append(run)
    return runs


def test_the_list_sorts_by_any_column_and_puts_runs_without_a_result_last(page: Any, three_runs: list[Run]) -> None:
    a, b, c = three_runs
    assert _ids(page.get("/runs/").content.decode()) == [c.pk, b.pk, a.pk]  # newest first
    assert _ids(page.get("/runs/?sort=final_loss").content.decode()) == [b.pk, c.pk, a.pk]
    assert _ids(page.get("/runs/?sort=-final_loss").content.decode()) == [a.pk, c.pk, b.pk]
    assert _ids(page.get("/runs/?sort=-duration").content.decode()) == [b.pk, a.pk, c.pk]
    assert _ids(page.get("/runs/?sort=-steps").content.decode()) == [c.pk, b.pk, a.pk]
    pending = Run.objects.create(dataset=a.dataset, base_model="tiny", status=RunStatus.PENDING)
    assert _ids(page.get("/runs/?sort=final_loss").content.decode())[-1] == pending.pk
    assert _ids(page.get("/runs/?sort=-final_loss").content.decode())[-1] == pending.pk
    html = page.get("/runs/?sort=final_loss").content.decode()
    assert 'aria-sort="ascending"' in html and "Final loss ▲" in html
    assert "sort=-final_loss" in html  # a second click reverses it


def test_a_bad_sort_names_the_parameter(page: Any, three_runs: list[Run]) -> None:
    response = page.get("/runs/?sort=nonsense")
    assert response.status_code == 400
    assert "sort: Unknown sort &#x27;nonsense&#x27;" in response.content.decode()


def test_latest_accuracy_per_eval_set_is_a_column_and_a_sort(page: Any, three_runs: list[Run]) -> None:
    a, b, c = three_runs
    quiz = make_eval_set()
    hand_evaluation(a, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    hand_evaluation(b, quiz, {"q1": True, "q2": False, "q3": False, "q4": False})
    html = page.get("/runs/").content.decode()
    assert "quiz accuracy" in html
    row_a = html[html.index(f'id="run-{a.pk}"') :]
    assert "75.0 %" in row_a[: row_a.index("</tr>")]
    ordered = _ids(page.get("/runs/?sort=-acc:quiz").content.decode())
    assert ordered == [a.pk, b.pk, c.pk]


def test_sorted_pages_load_more_by_offset(page: Any, user: Any) -> None:
    dataset = build_arithmetic_dataset(count=8)
    for n in range(55):
        run = completed_run(dataset, created_by=user, files=False)
        run.summary = {"final_train_loss": float(n)}
        run.save(update_fields=["summary"])
    first = page.get("/runs/?sort=final_loss").content.decode()
    assert len(_ids(first)) == 50 and "cursor=o50" in first
    rest = page.get("/runs/?sort=final_loss&cursor=o50", headers={"HX-Request": "true"}).content.decode()
    assert len(_ids(rest)) == 5
    assert page.get("/runs/?sort=final_loss&cursor=zzz").status_code == 400


def test_a_run_is_named_and_noted_from_its_page_and_the_api(page: Any, api: Any, three_runs: list[Run]) -> None:
    run = three_runs[0]
    response = page.post(f"/runs/{run.pk}/describe/", {"name": "lr sweep 3e-4", "notes": "baseline for the sweep"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.name, run.notes) == ("lr sweep 3e-4", "baseline for the sweep")
    html = page.get(f"/runs/{run.pk}/").content.decode()
    assert "lr sweep 3e-4" in html and "baseline for the sweep" in html
    too_long = page.post(f"/runs/{run.pk}/describe/", {"name": "x" * 121, "notes": ""}, headers={"HX-Request": "true"})
    assert too_long.status_code == 400 and "at most 120 characters" in too_long.content.decode()

    answer = api.patch(f"/api/runs/{run.pk}", {"notes": "edited by API"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["notes"] == "edited by API" and answer.json()["name"] == "lr sweep 3e-4"
    bad = api.patch(f"/api/runs/{run.pk}", {"name": "y" * 121}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()
    assert api.patch(f"/api/runs/{run.pk}", {}, format="json").status_code == 400
    listing = page.get("/runs/?name=SWEEP").content.decode()
    assert _ids(listing) == [run.pk]
    assert api.get("/api/runs?name=sweep").json()["results"][0]["name"] == "lr sweep 3e-4"


def test_viewers_and_other_members_cannot_rename_a_run(
    viewer_page: Any, other_page: Any, three_runs: list[Run]
) -> None:
    run = three_runs[0]
    assert viewer_page.post(f"/runs/{run.pk}/describe/", {"name": "mine"}).status_code == 403
    assert other_page.post(f"/runs/{run.pk}/describe/", {"name": "mine"}).status_code == 403
    run.refresh_from_db()
    assert run.name == ""
    assert 'id="describe-form"' not in viewer_page.get(f"/runs/{run.pk}/").content.decode()


def test_filters_are_labelled_for_people_and_dates_use_a_date_picker(page: Any) -> None:
    html = page.get("/runs/").content.decode()
    assert "---------" not in html and "is greater than" not in html
    assert "Any status" in html and "Launched from" in html
    assert re.search(r'<input type="date" name="created_after"', html)
    assert page.get("/runs/?created_after=2026-01-01").status_code == 200
