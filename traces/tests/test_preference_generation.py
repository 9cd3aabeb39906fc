"""Preference pairs generated from two evaluations: the right output chosen over the wrong one, per item."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from runs.choices import RunStatus
from runs.models import Prediction
from runs.tests.eval_support import completed_run, hand_evaluation, make_eval_set, sums_dataset, use_eval_folders
from traces.models import PreferencePair
from traces.preferences.generating import model_turn

pytestmark = pytest.mark.django_db

URL = "/api/preference-pairs/from-evaluations"


@pytest.fixture(autouse=True)
def _folders(settings: Any, tmp_path: Any) -> None:
    use_eval_folders(settings, tmp_path)


@pytest.fixture
def trained_and_base() -> Any:
    """On `quiz` (q1–q4) the trained model gets q1, q2, q3 right; its base gets q2 and q4 right."""
    quiz = make_eval_set("quiz")
    run = completed_run(sums_dataset())
    trained = hand_evaluation(run, quiz, {"q1": True, "q2": True, "q3": True, "q4": ("7", False)})
    base = hand_evaluation(run, quiz, {"q1": ("5", False), "q2": True, "q3": ("1", False), "q4": True}, baseline=True)
    return quiz, run, trained, base


def test_each_disagreement_becomes_a_pair_with_the_right_output_chosen(api, user, trained_and_base):
    _, _, trained, base = trained_and_base
    Prediction.objects.filter(evaluation=trained, item__item_id="q1").update(
        raw_output="Reasoning:\n1. 1 + 1 = 2\nAnswer: 2<end_of_turn>\n<start_of_turn>user\nAnswer: 3"
    )
    response = api.post(URL, {"evaluation": trained.pk, "other": base.pk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["compared"], body["disagreements"], body["created"], body["skipped"]) == (4, 3, 3, 0)
    pairs = {p.eval_item.item_id: p for p in PreferencePair.objects.select_related("eval_item") if p.eval_item}
    assert sorted(pairs) == ["q1", "q3", "q4"]
    q1 = pairs["q1"]
    assert q1.prompt == "What is 1 + 1?"
    assert q1.chosen == "Reasoning:\n1. 1 + 1 = 2\nAnswer: 2"  # cut at the end of the model's turn
    assert q1.rejected == "Reasoning:\n1. think\nAnswer: 5"
    assert (q1.chosen_evaluation, q1.rejected_evaluation, q1.source, q1.created_by) == (
        trained,
        base,
        "evaluation",
        user,
    )
    assert q1.meta == {
        "eval_set": "quiz",
        "item_id": "q1",
        "expected_answer": "2",
        "chosen_answer": "2",
        "rejected_answer": "5",
    }
    q4 = pairs["q4"]  # the base got this one right: its output is chosen
    assert (q4.chosen_evaluation, q4.rejected_evaluation) == (base, trained)
    assert q4.chosen.endswith("Answer: 8") and q4.rejected.endswith("Answer: 7")


def test_generating_again_creates_nothing(api, trained_and_base):
    _, _, trained, base = trained_and_base
    api.post(URL, {"evaluation": trained.pk, "other": base.pk}, format="json")
    again = api.post(URL, {"evaluation": base.pk, "other": trained.pk}, format="json")
    assert again.status_code == 200
    assert (again.json()["created"], again.json()["duplicates"]) == (0, 3)
    assert PreferencePair.objects.count() == 3


def test_evaluations_that_cannot_be_paired_are_refused_naming_the_field(api, trained_and_base):
    quiz, run, trained, base = trained_and_base
    other_set = make_eval_set("other-quiz")
    elsewhere = hand_evaluation(run, other_set, {"q1": True})
    running = hand_evaluation(run, quiz, {"q1": False}, finish=False)
    cases = [
        ({"evaluation": trained.pk, "other": elsewhere.pk}, "other", "another eval set"),
        ({"evaluation": trained.pk, "other": trained.pk}, "other", "two different"),
        ({"evaluation": running.pk, "other": base.pk}, "evaluation", "running, not completed"),
        ({"evaluation": trained.pk, "other": 999999}, "other", "No evaluation 999999"),
        ({"evaluation": "x", "other": base.pk}, "evaluation", ""),
        ({"other": base.pk}, "evaluation", ""),
    ]
    for body, field, message in cases:
        response = api.post(URL, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert message in " ".join(response.json()[field]), response.json()
    assert running.status == RunStatus.RUNNING
    assert not PreferencePair.objects.exists()


def test_a_viewer_cannot_generate_pairs(viewer_api, trained_and_base):
    _, _, trained, base = trained_and_base
    assert viewer_api.post(URL, {"evaluation": trained.pk, "other": base.pk}, format="json").status_code == 403


def test_the_model_turn_is_cut_at_any_templates_end_marker():
    assert model_turn(" Answer: 4<|im_end|>junk") == "Answer: 4"
    assert model_turn("Answer: 4<|eot_id|><end_of_turn>") == "Answer: 4"
    assert model_turn("Answer: 4") == "Answer: 4"


def test_identical_outputs_are_skipped_not_stored(api, trained_and_base):
    _, _, trained, base = trained_and_base
    Prediction.objects.filter(evaluation__in=[trained, base], item__item_id="q1").update(raw_output="same text")
    body = api.post(URL, {"evaluation": trained.pk, "other": base.pk}, format="json").json()
    assert (body["disagreements"], body["created"], body["skipped"]) == (3, 2, 1)


def test_the_compare_page_button_makes_the_pairs(page, trained_and_base):
    quiz, run, trained, _ = trained_and_base
    other = completed_run(run.dataset)
    theirs = hand_evaluation(other, quiz, {"q1": False, "q2": False, "q3": False, "q4": False})
    html = page.get("/evaluations/compare/", {"eval_set": "quiz", "a": run.pk, "b": other.pk}).content.decode()
    assert "Make preference pairs" in html
    assert f'name="evaluation" value="{trained.pk}"' in html and f'name="other" value="{theirs.pk}"' in html
    response = page.post(
        "/preferences/from-evaluations/", {"evaluation": trained.pk, "other": theirs.pk}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 201
    assert "3 new preference pairs" in response.content.decode()
    refused = page.post("/preferences/from-evaluations/", {"evaluation": trained.pk, "other": trained.pk})
    assert refused.status_code == 302
    assert "two different" in page.get(refused["Location"]).content.decode()


def test_the_command_pairs_a_trained_run_with_its_base(user, trained_and_base):
    quiz, run, trained, base = trained_and_base
    out = io.StringIO()
    call_command("pairs_from_evaluations", "--run", run.pk, "--eval-set", "quiz", stdout=out)
    assert "4 items compared, 3 answered right by one and wrong by the other: 3 pairs created" in out.getvalue()
    out = io.StringIO()
    call_command("pairs_from_evaluations", trained.pk, base.pk, stdout=out)
    assert "0 pairs created, 3 already stored" in out.getvalue()
    with pytest.raises(CommandError, match="No evaluation 999999"):
        call_command("pairs_from_evaluations", trained.pk, 999999)
    with pytest.raises(CommandError, match="two evaluations"):
        call_command("pairs_from_evaluations", trained.pk)
    unbased = completed_run(run.dataset)
    hand_evaluation(unbased, quiz, {"q1": True})
    with pytest.raises(CommandError, match=f"Run {unbased.pk} has no completed baseline"):
        call_command("pairs_from_evaluations", "--run", unbased.pk, "--eval-set", "quiz")
