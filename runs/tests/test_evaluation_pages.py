"""Evaluation pages: eval sets (upload, detail), evaluation detail (scorecard, wrong only, progress), run page form."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs.choices import RunStatus
from runs.models import EvalSet, Evaluation
from runs.tests.eval_support import (
    EVAL_V1,
    completed_run,
    hand_evaluation,
    item,
    jsonl,
    make_eval_set,
    record_evaluation_tasks,
    use_eval_folders,
)
from runs.tests.run_support import build_arithmetic_dataset, finished_run, make_run

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def sent(monkeypatch):
    return record_evaluation_tasks(monkeypatch)


def test_the_evaluation_home_lists_eval_sets_and_recent_evaluations(page, dataset):
    quiz = make_eval_set("quiz")
    run = completed_run(dataset)
    evaluation = hand_evaluation(run, quiz, {"q1": True, "q2": False})
    response = page.get("/evaluations/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/evaluations/sets/quiz/"' in html
    assert f'href="/evaluations/{evaluation.pk}/"' in html
    assert "0.500" in html
    assert "arith@v1 (8 validation)" in html  # datasets with a validation split can become eval sets


def test_uploading_a_good_file_creates_the_eval_set(page):
    upload = SimpleUploadedFile("quiz.jsonl", jsonl([item(1), item(2)]))
    response = page.post("/evaluations/", {"name": "quiz", "file": upload})
    assert response.status_code == 302
    assert response.url == "/evaluations/sets/quiz/"
    assert EvalSet.objects.get().item_count == 2
    assert "Eval set quiz created with 2 items." in page.get(response.url).content.decode()


@pytest.mark.skipif(not EVAL_V1.exists(), reason="the shared eval sets are missing")
def test_uploading_the_shared_eval_v1(page):
    upload = SimpleUploadedFile("eval_v1.jsonl", EVAL_V1.read_bytes())
    response = page.post("/evaluations/", {"name": "eval-v1", "file": upload}, follow=True)
    assert response.status_code == 200
    assert "25 items" in response.content.decode()


def test_uploading_a_bad_file_shows_each_bad_line_and_stores_nothing(page):
    upload = SimpleUploadedFile(
        "bad.jsonl", jsonl([item(1), {"id": "q2", "prompt": "p"}, "{broken", item(1, prompt="again")])
    )
    response = page.post("/evaluations/", {"name": "bad", "file": upload})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was imported." in html
    assert "line 2: expected_answer: required (a non-empty string)" in html
    assert "line 3: Malformed JSON" in html
    assert "line 4: duplicate id &#x27;q1&#x27; (first on line 1)" in html
    assert not EvalSet.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "quiz"}, "file: No file was sent: choose a JSONL file or a dataset."),
        ({"name": "Bad Name", "file": b"x"}, "name: Use 1–100 lowercase letters"),
        ({"name": "quiz", "dataset": "nope@v1"}, "dataset: No dataset"),
        ({"name": "quiz", "file": b""}, "line 0: The file holds no items."),
    ],
)
def test_upload_form_errors_are_shown(page, data, message):
    if isinstance(data.get("file"), bytes):
        data = {**data, "file": SimpleUploadedFile("f.jsonl", data["file"])}
    response = page.post("/evaluations/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not EvalSet.objects.exists()


def test_a_datasets_validation_split_becomes_an_eval_set_from_the_page(page):
    dataset = build_arithmetic_dataset()
    response = page.post("/evaluations/", {"name": "held-out", "dataset": dataset.key})
    assert response.status_code == 302
    assert EvalSet.objects.get(name="held-out").item_count == 8


def test_the_eval_set_page_lists_its_items_and_top_runs(page, dataset):
    quiz = make_eval_set("quiz")
    run = completed_run(dataset)
    hand_evaluation(run, quiz, {"q1": True, "q2": True, "q3": True, "q4": False})
    response = page.get("/evaluations/sets/quiz/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Eval set quiz" in html
    assert "4 items" in html
    assert "What is 3 + 3?" in html and ">words<" in html and ">extra<" in html
    assert f"run #{run.pk}" in html and "0.750" in html
    assert page.get("/evaluations/sets/nope/").status_code == 404


def test_the_evaluation_page_shows_the_scorecard_and_every_item(page, dataset):
    quiz = make_eval_set("quiz")
    evaluation = hand_evaluation(completed_run(dataset), quiz, {"q1": True, "q2": ("7", False), "q3": True})
    response = page.get(f"/evaluations/{evaluation.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="value" id="accuracy">0.667</span>' in html
    assert "accuracy (2/3)" in html
    assert "By category" in html and "By section" in html and "By difficulty" in html
    assert "judge exact_or_numeric v1" in html
    assert html.count('<tr class="right">') == 2
    assert html.count('<tr class="wrong">') == 1
    assert "Answer: 7" in html  # the raw output
    assert 'id="wrong-only"' in html
    assert "hx-trigger" not in html, "a finished evaluation does not poll"


def test_wrong_only_shows_just_the_wrong_answers(page, dataset):
    quiz = make_eval_set("quiz")
    evaluation = hand_evaluation(completed_run(dataset), quiz, {"q1": True, "q2": False, "q3": False})
    html = page.get(f"/evaluations/{evaluation.pk}/", {"wrong": "1"}).content.decode()
    assert html.count('<tr class="wrong">') == 2
    assert '<tr class="right">' not in html
    assert "Show all" in html
    perfect = hand_evaluation(completed_run(dataset), quiz, {"q1": True})
    assert "No predictions answered wrongly." in page.get(f"/evaluations/{perfect.pk}/?wrong=1").content.decode()


def test_a_base_model_evaluation_says_so(page, dataset):
    evaluation = hand_evaluation(make_run(dataset), make_eval_set("quiz"), {"q1": False}, baseline=True)
    assert "untrained base model (tiny)" in page.get(f"/evaluations/{evaluation.pk}/").content.decode()


def test_the_progress_fragment_polls_while_active_and_stops_with_286_when_done(page, user, dataset):
    quiz = make_eval_set("quiz")
    running = hand_evaluation(completed_run(dataset), quiz, {"q1": True}, finish=False, created_by=user)
    Evaluation.objects.filter(pk=running.pk).update(done=1)
    fragment = page.get(f"/evaluations/{running.pk}/", {"fragment": "progress"}, **HTMX)
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert 'hx-trigger="every 2s"' in html
    assert "1 / 4 answered" in html
    assert "<h1>" not in html, "a fragment, not the page"
    assert "HX-Refresh" not in fragment

    full = page.get(f"/evaluations/{running.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in full and "Cancel</button>" in full

    done = hand_evaluation(completed_run(dataset), quiz, {"q1": True, "q2": True})
    fragment = page.get(f"/evaluations/{done.pk}/", {"fragment": "progress"}, **HTMX)
    assert fragment.status_code == 286
    assert fragment["HX-Refresh"] == "true"
    assert "hx-trigger" not in fragment.content.decode()
    assert "2 / 4 answered, 2 correct" in fragment.content.decode()


def test_cancel_from_the_evaluation_page(page, user, dataset, sent):
    quiz = make_eval_set("quiz")
    pending = Evaluation.objects.create(run=completed_run(dataset), eval_set=quiz, total=4, created_by=user)
    response = page.post(f"/evaluations/{pending.pk}/cancel/")
    assert response.status_code == 302
    assert response.url == f"/evaluations/{pending.pk}/"
    pending.refresh_from_db()
    assert pending.status == RunStatus.CANCELLED
    again = page.post(f"/evaluations/{pending.pk}/cancel/", follow=True)
    assert "already cancelled" in again.content.decode()
    assert page.get(f"/evaluations/{pending.pk}/cancel/").status_code == 405


def test_the_run_page_offers_the_evaluate_form_and_lists_evaluations(maintainer_page, dataset):
    quiz = make_eval_set("quiz")
    run = completed_run(dataset)
    evaluation = hand_evaluation(run, quiz, {"q1": True})
    html = maintainer_page.get(f"/runs/{run.pk}/").content.decode()
    assert f'action="/runs/{run.pk}/evaluate/"' in html
    assert '<option value="quiz">quiz (4)</option>' in html
    assert f'href="/evaluations/{evaluation.pk}/"' in html
    assert f'action="/runs/{run.pk}/promote/"' in html


def test_the_run_page_without_eval_sets_points_to_the_import(page, dataset):
    html = page.get(f"/runs/{completed_run(dataset).pk}/").content.decode()
    assert "No eval sets yet." in html


def test_the_evaluate_form_queues_and_redirects_to_the_evaluation(
    page, dataset, sent, django_capture_on_commit_callbacks
):
    make_eval_set("quiz")
    run = completed_run(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        response = page.post(f"/runs/{run.pk}/evaluate/", {"eval_set": "quiz", "max_new_tokens": "16"})
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302
    assert response.url == f"/evaluations/{evaluation.pk}/"
    assert (evaluation.max_new_tokens, evaluation.baseline, evaluation.status) == (16, False, RunStatus.PENDING)
    assert sent == [(evaluation.pk,)]
    page.post(f"/runs/{run.pk}/evaluate/", {"eval_set": "quiz", "baseline": "on"})
    assert Evaluation.objects.filter(baseline=True).count() == 1


@pytest.mark.parametrize(
    ("status", "data", "message"),
    [
        (RunStatus.FAILED, {"eval_set": "quiz"}, "only completed training runs"),
        (RunStatus.COMPLETED, {"eval_set": ""}, "Choose an eval set."),
        (RunStatus.COMPLETED, {"eval_set": "quiz", "max_new_tokens": "0"}, "max_new_tokens must be between"),
        (RunStatus.COMPLETED, {"eval_set": "quiz", "max_new_tokens": "lots"}, "Cannot evaluate"),
    ],
)
def test_the_evaluate_form_explains_a_refusal_on_the_run_page(page, dataset, status, data, message):
    make_eval_set("quiz")
    run = finished_run(dataset, status=status)
    response = page.post(f"/runs/{run.pk}/evaluate/", data, follow=True)
    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    assert message in response.content.decode()
    assert not Evaluation.objects.exists()


def test_evaluation_pages_need_a_login(client, dataset):
    evaluation = hand_evaluation(completed_run(dataset), make_eval_set("quiz"), {"q1": True})
    for url in ("/evaluations/", f"/evaluations/{evaluation.pk}/", "/evaluations/sets/quiz/", "/regression/",
                "/models/", "/evaluations/compare/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/accounts/login/")
