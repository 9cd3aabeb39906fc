"""The leaderboard: one row per run (its latest evaluation on the set), best first, with filters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.evaluation.leaderboard import leaderboard
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, use_eval_folders
from runs.tests.run_support import build_arithmetic_dataset

pytestmark = pytest.mark.django_db

ALL_RIGHT = {"q1": True, "q2": True, "q3": True, "q4": True}


@pytest.fixture(autouse=True)
def _folders(settings, tmp_path):
    use_eval_folders(settings, tmp_path)


def _verdicts(correct: int) -> dict[str, bool]:
    return {f"q{n}": n <= correct for n in range(1, 5)}


@pytest.fixture
def board(dataset):
    """Three runs on `quiz`: A evaluated twice (4/4, then 1/4), B 3/4, C (another dataset, small) 2/4;
    A's base model 2/4 as a baseline; a pending evaluation of B that must not show."""
    other = build_arithmetic_dataset("other", count=8, first=40)
    quiz = make_eval_set("quiz")
    a = completed_run(dataset)
    b = completed_run(dataset)
    c = completed_run(other, base_model="small")
    hand_evaluation(a, quiz, ALL_RIGHT, age=timedelta(minutes=5))
    later = hand_evaluation(a, quiz, _verdicts(1))
    best = hand_evaluation(b, quiz, _verdicts(3))
    third = hand_evaluation(c, quiz, _verdicts(2))
    base = hand_evaluation(a, quiz, _verdicts(2), baseline=True)
    hand_evaluation(b, quiz, ALL_RIGHT, finish=False)
    return {"quiz": quiz, "a": a, "b": b, "c": c, "later": later, "best": best, "third": third, "base": base}


def test_one_row_per_run_from_its_latest_evaluation_best_first(board):
    rows = list(leaderboard(board["quiz"]))
    assert [(e.run_id, e.accuracy) for e in rows] == [
        (board["b"].pk, 0.75),
        (board["c"].pk, 0.5),
        (board["a"].pk, 0.25),  # its earlier 4/4 no longer counts
    ]
    assert [e.pk for e in rows] == [board["best"].pk, board["third"].pk, board["later"].pk]


def test_base_model_evaluations_have_their_own_board(board):
    assert [e.pk for e in leaderboard(board["quiz"], baseline=True)] == [board["base"].pk]


def test_filters_by_dataset_and_base_model(board):
    def runs(**filters):
        return [e.run_id for e in leaderboard(board["quiz"], **filters)]

    assert runs(dataset="other") == [board["c"].pk]
    assert runs(dataset="other@v1") == [board["c"].pk]
    assert runs(dataset="arith@v1") == [board["b"].pk, board["a"].pk]
    assert runs(dataset="arith@v2") == []
    assert runs(base_model="small") == [board["c"].pk]
    assert runs(base_model="tiny", dataset="arith") == [board["b"].pk, board["a"].pk]
    assert runs(base_model="nothing") == []


def test_another_eval_set_has_its_own_board(board):
    assert list(leaderboard(make_eval_set("empty-board"))) == []


def test_the_api_ranks_runs(api, board):
    response = api.get("/api/leaderboard", {"eval_set": "quiz"})
    assert response.status_code == 200
    body = response.json()
    assert body["eval_set"] == "quiz"
    assert [(r["rank"], r["run"], r["accuracy"]) for r in body["rows"]] == [
        (1, board["b"].pk, 0.75),
        (2, board["c"].pk, 0.5),
        (3, board["a"].pk, 0.25),
    ]
    first = body["rows"][0]
    assert first["evaluation"] == board["best"].pk
    assert (first["correct"], first["total"]) == (3, 4)
    assert (first["dataset"], first["base_model"], first["method"]) == ("arith@v1", "tiny", "full")
    assert first["finished_at"]


def test_the_api_filters_and_limits(api, board):
    def runs(**params):
        response = api.get("/api/leaderboard", {"eval_set": "quiz", **params})
        assert response.status_code == 200, response.json()
        return [r["run"] for r in response.json()["rows"]]

    assert runs(dataset="other@v1") == [board["c"].pk]
    assert runs(base_model="small") == [board["c"].pk]
    assert runs(baseline="1") == [board["a"].pk]
    assert runs(baseline="true") == [board["a"].pk]
    assert runs(limit="2") == [board["b"].pk, board["c"].pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "eval_set"),
        ({"eval_set": ""}, "eval_set"),
        ({"eval_set": "no-such-set"}, "eval_set"),
        ({"eval_set": "quiz", "limit": "0"}, "limit"),
        ({"eval_set": "quiz", "limit": "1001"}, "limit"),
        ({"eval_set": "quiz", "limit": "ten"}, "limit"),
        ({"eval_set": "quiz", "baseline": "maybe"}, "baseline"),
    ],
)
def test_the_api_needs_an_existing_eval_set_and_a_sane_limit(api, board, params, field):
    response = api.get("/api/leaderboard", params)
    assert response.status_code == 400
    assert field in response.json()


def test_the_api_costs_the_same_queries_for_any_number_of_rows(api, dataset):
    quiz = make_eval_set("quiz")
    hand_evaluation(completed_run(dataset), quiz, ALL_RIGHT)
    with CaptureQueriesContext(connection) as one:
        assert len(api.get("/api/leaderboard", {"eval_set": "quiz"}).json()["rows"]) == 1
    for n in range(4):
        hand_evaluation(completed_run(dataset), quiz, _verdicts(n))
    with CaptureQueriesContext(connection) as five:
        assert len(api.get("/api/leaderboard", {"eval_set": "quiz"}).json()["rows"]) == 5
    assert len(five) == len(one)


def test_the_page_shows_the_board_and_its_filters(page, board):
    response = page.get("/leaderboard/", {"eval_set": "quiz"})
    assert response.status_code == 200
    html = response.content.decode()
    order = [html.index(f"run #{board[k].pk}<") for k in ("b", "c", "a")]
    assert order == sorted(order), "best first"
    assert "75.0 %" in html and "3/4" in html
    assert "25.0 %" in html and "100.0 %" not in html

    small = page.get("/leaderboard/", {"eval_set": "quiz", "base_model": "small"}).content.decode()
    assert f"run #{board['c'].pk}<" in small
    assert f"run #{board['a'].pk}<" not in small

    base = page.get("/leaderboard/", {"eval_set": "quiz", "baseline": "1"}).content.decode()
    assert f"run #{board['a'].pk}<" in base
    assert f"run #{board['b'].pk}<" not in base

    newest = page.get("/leaderboard/", {"eval_set": "quiz", "sort": "run"}).content.decode()
    runs_desc = sorted((board[k].pk for k in ("a", "b", "c")), reverse=True)
    positions = [newest.index(f"run #{pk}<") for pk in runs_desc]
    assert positions == sorted(positions)


def test_the_page_without_a_choice_opens_on_the_set_with_the_newest_results(page, board):
    make_eval_set("a-first")  # first by name, but nothing evaluated on it
    response = page.get("/leaderboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"run #{board['b'].pk}<" in html
    assert '<option value="quiz" selected>' in html

    hand_evaluation(board["c"], make_eval_set("z-last"), _verdicts(4))
    html = page.get("/leaderboard/").content.decode()
    assert '<option value="z-last" selected>' in html
    assert f"run #{board['c'].pk}<" in html and f"run #{board['b'].pk}<" not in html


def test_the_page_without_results_anywhere_opens_on_the_first_set(page, db):
    make_eval_set("b-set")
    make_eval_set("a-set")
    html = page.get("/leaderboard/").content.decode()
    assert "No completed evaluation on a-set yet." in html


def test_base_model_rows_are_marked_as_untrained(page, board):
    base = page.get("/leaderboard/", {"eval_set": "quiz", "baseline": "1"}).content.decode()
    assert base.count('class="baseline-row"') == 1
    assert "base model, untrained</span> of" in base
    assert "none (untrained)" in base
    trained = page.get("/leaderboard/", {"eval_set": "quiz"}).content.decode()
    assert "baseline-row" not in trained and "untrained</span>" not in trained


def test_the_page_with_no_eval_sets_says_so(page, db):
    response = page.get("/leaderboard/")
    assert response.status_code == 200
    assert "No eval sets yet." in response.content.decode()


def test_the_leaderboard_needs_a_login(client, board):
    assert client.get("/leaderboard/").status_code == 302
    assert client.get("/api/leaderboard", {"eval_set": "quiz"}).status_code in (401, 403)


def test_leaderboard_rows_can_be_ticked_for_comparison(page, board):
    html = page.get("/leaderboard/").content.decode()
    start = html.index('id="leaderboard-compare-form"')
    form = html[start : html.index("</form>", start)]
    assert 'action="/runs/compare/"' in html
    for key in ("a", "b", "c"):
        assert f'name="id" value="{board[key].pk}"' in form
