"""Launching GRPO runs: the reward weights and the eval-set prompt source, by the API, the form and the command."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.execution import prepare_job
from runs.models import Run
from runs.tests.eval_support import item, make_eval_set
from runs.tests.run_support import make_run, output
from runs.training.rewards import DEFAULT_SPEC
from runs.validation import LaunchInvalid, validate_launch

pytestmark = pytest.mark.django_db

BAD_REWARDS: list[tuple[Any, str, str]] = [
    ({"format": -1}, "rewards.format", "between 0 and 100"),
    ({"format": 101}, "rewards.format", "between 0 and 100"),
    ({"format": "lots"}, "rewards.format", "must be a number"),
    ({"format": True}, "rewards.format", "must be a number"),
    ({"style": 1}, "rewards.style", "unknown reward function"),
    ({"correctness": 0, "format": 0}, "rewards", "at least one reward weight"),
    ({}, "rewards", "non-empty object"),
    ([1, 2], "rewards", "non-empty object"),
]


def refused(data: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(LaunchInvalid) as caught:
        validate_launch(data)
    return caught.value.errors


@pytest.mark.parametrize(("rewards", "field", "message"), BAD_REWARDS)
def test_bad_reward_weights_are_refused_naming_the_field(api, dataset, rewards, field, message):
    body = {"dataset": dataset.key, "objective": "grpo", "rewards": rewards}
    errors = refused(body)
    assert list(errors) == [field]
    assert message in errors[field][0].lower()
    response = api.post("/api/runs", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Run.objects.exists()  # nothing stored


def test_a_grpo_run_gets_the_engines_default_reward_and_other_runs_none(dataset):
    assert validate_launch({"dataset": dataset.key, "objective": "grpo"})["rewards"] == DEFAULT_SPEC
    values = validate_launch({"dataset": dataset.key})
    assert values["rewards"] is None and values["prompt_eval_set"] is None
    assert refused({"dataset": dataset.key, "rewards": {"format": 1}}) == {
        "rewards": ["Only a GRPO run has reward weights."]
    }


def test_the_api_launches_grpo_with_weights_and_eval_set_prompts_and_shows_them(api, user, dataset):
    quiz = make_eval_set(created_by=user)
    body = {
        "dataset": dataset.key,
        "objective": "grpo",
        "rewards": {"correctness": 1, "format": 0.5, "length": 0.1},
        "prompt_eval_set": "quiz",
    }
    response = api.post("/api/runs", body, format="json")
    assert response.status_code == 201, response.json()
    config = response.json()["config"]
    assert config["rewards"] == {"correctness": 1.0, "format": 0.5, "length": 0.1}
    assert config["prompt_eval_set"] == "quiz"
    run = Run.objects.get()
    assert run.prompt_eval_set == quiz
    # Retry copies both.
    response = api.post(f"/api/runs/{run.pk}/retry", format="json")
    assert response.status_code in (200, 201), response.json()
    retried = Run.objects.exclude(pk=run.pk).get()
    assert (retried.rewards, retried.prompt_eval_set_id) == (run.rewards, quiz.pk)
    # The eval set now feeds runs: deleting it is refused, not a 500.
    response = api.delete("/api/eval-sets/quiz")
    assert response.status_code == 409 and "GRPO runs" in response.json()["detail"]


def test_the_prompt_eval_set_must_exist_have_items_and_belong_to_a_grpo_run(dataset):
    make_eval_set()
    grpo = {"dataset": dataset.key, "objective": "grpo"}
    assert refused({**grpo, "prompt_eval_set": "nope"}) == {"prompt_eval_set": ["No eval set 'nope'."]}
    assert refused({**grpo, "prompt_eval_set": 3}) == {"prompt_eval_set": ["No eval set 3."]}
    assert refused({"dataset": dataset.key, "prompt_eval_set": "quiz"}) == {
        "prompt_eval_set": ["Only a GRPO run trains on an eval set's prompts."]
    }
    assert validate_launch({**grpo, "prompt_eval_set": "quiz"})["prompt_eval_set"].name == "quiz"


def test_the_job_carries_the_weights_and_the_eval_sets_items_are_the_prompts(dataset):
    make_eval_set("sums", [item(n, prompt=f"What is {n} + 1?", expected_answer=str(n + 1)) for n in range(1, 6)])
    run = make_run(dataset, objective="grpo", rewards={"correctness": 2, "format": 0}, prompt_eval_set="sums")

    job = json.loads(prepare_job(run).read_text())

    assert job["rewards"] == {"correctness": 2.0, "format": 0.0}
    lines = [json.loads(line) for line in (output(run) / "data" / "train.jsonl").read_text().splitlines()]
    assert lines == [{"prompt": f"What is {n} + 1?", "answer": str(n + 1)} for n in range(1, 6)]
    # The dataset's validation split stays the validation file.
    validation = (output(run) / "data" / "validation.jsonl").read_text().splitlines()
    assert validation and all(json.loads(line)["prompt"].startswith("What is ") for line in validation)
    sft = make_run(dataset)
    assert json.loads(prepare_job(sft).read_text())["rewards"] is None


def test_the_launch_form_has_a_weight_per_reward_function_shown_for_grpo(page, dataset, sent_tasks):
    make_eval_set()
    html = page.get("/runs/new/").content.decode()
    assert '<fieldset data-objectives="grpo" id="reward-weights">' in html
    for name in ("correctness", "format", "length"):
        assert f'name="reward_{name}"' in html
    assert '<option value="quiz">' in html
    form = {
        "dataset": dataset.key,
        "base_model": "tiny",
        "objective": "grpo",
        "method": "full",
        "chat_template": "auto",
        "prompt_eval_set": "quiz",
        "reward_correctness": "1",
        "reward_format": "0.25",
        "reward_length": "",
    }
    response = page.post("/runs/new/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = Run.objects.get()
    assert run.rewards == {"correctness": 1.0, "format": 0.25, "length": 0.0}
    assert run.config()["prompt_eval_set"] == "quiz"
    detail = page.get(f"/runs/{run.pk}/").content.decode()
    assert "<th>Reward</th>" in detail and "correctness × 1 + format × 0.25" in detail
    assert 'id="run-prompt-eval-set"' in detail


def test_the_launch_form_shows_reward_errors_by_their_input_and_stores_nothing(page, dataset, sent_tasks):
    make_eval_set()
    form = {
        "dataset": dataset.key,
        "base_model": "tiny",
        "objective": "grpo",
        "method": "full",
        "chat_template": "auto",
        "reward_correctness": "0",
        "reward_format": "200",
        "reward_length": "x",
    }
    response = page.post("/runs/new/", form)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "between 0 and 100" in errors["reward_format"][0]
    assert "number" in errors["reward_length"][0]
    assert not Run.objects.exists()
    # Another objective ignores the (hidden) GRPO inputs.
    response = page.post("/runs/new/", {**form, "objective": "sft", "prompt_eval_set": "quiz"})
    assert response.status_code == 302, response.context["form"].errors
    assert (Run.objects.get().rewards, Run.objects.get().prompt_eval_set) == (None, None)


def test_launch_run_takes_rewards_and_the_eval_set(dataset, capsys, sent_tasks):
    make_eval_set()
    call_command(
        "launch_run",
        "--dataset", dataset.key,
        "--objective", "grpo",
        "--reward", "correctness=1",
        "--reward", "format=0.5",
        "--prompt-eval-set", "quiz",
    )  # fmt: skip
    run = Run.objects.get()
    assert (run.rewards, run.config()["prompt_eval_set"]) == ({"correctness": 1.0, "format": 0.5}, "quiz")
    with pytest.raises(CommandError, match=r"rewards\.format: The weight must be between 0 and 100"):
        call_command("launch_run", "--dataset", dataset.key, "--objective", "grpo", "--reward", "format=500")
    with pytest.raises(CommandError, match="--reward expects NAME=WEIGHT"):
        call_command("launch_run", "--dataset", dataset.key, "--objective", "grpo", "--reward", "format")
    with pytest.raises(CommandError, match=r"rewards\.format: The weight must be a number"):
        call_command("launch_run", "--dataset", dataset.key, "--objective", "grpo", "--reward", "format=much")
    assert Run.objects.count() == 1


def test_compare_shows_the_reward_and_prompt_source(page, dataset):
    make_eval_set()
    one = make_run(dataset, objective="grpo", rewards={"correctness": 1.0, "format": 1.0})
    two = make_run(dataset, objective="grpo", prompt_eval_set="quiz")
    html = page.get(f"/runs/compare/?id={one.pk}&id={two.pk}").content.decode()
    assert "correctness × 1 + format × 1" in html
    assert "correctness × 1 + format × 0.5" in html
    assert "quiz" in html


def test_a_running_grpo_runs_page_polls_its_sampled_completions(page, dataset):
    run = make_run(dataset, objective="grpo")
    Run.objects.filter(pk=run.pk).update(status="running")
    html = page.get(f"/runs/{run.pk}/").content.decode()
    assert "?fragment=grpo-samples" in html and "Shown after the first step." in html
    sample = {
        "prompt": "What is 2 + 3?",
        "completion": "Reasoning:\n1. 2 + 3 = 5\nAnswer: 5",
        "answer": "5",
        "rewards": {"correctness": 1.0, "format": 1.0},
        "reward": 1.5,
    }
    Run.objects.filter(pk=run.pk).update(summary={"grpo_samples": [sample], "grpo_samples_step": 4})
    response = page.get(f"/runs/{run.pk}/?fragment=grpo-samples", HTTP_HX_REQUEST="true")
    fragment = response.content.decode()
    assert response.status_code == 200 and fragment.lstrip().startswith('<section class="card" id="grpo-samples"')
    assert "Sampled completions (step 4)" in fragment and "Answer: 5" in fragment
    assert "<th>correctness</th><td>1" in fragment and "<strong>1.5</strong>" in fragment
    Run.objects.filter(pk=run.pk).update(status="completed")
    response = page.get(f"/runs/{run.pk}/?fragment=grpo-samples", HTTP_HX_REQUEST="true")
    assert response.status_code == 286  # polling stops once the run has ended
    assert "hx-trigger" not in response.content.decode()
    sft = make_run(dataset)
    Run.objects.filter(pk=sft.pk).update(status="running")
    assert 'id="grpo-samples"' not in page.get(f"/runs/{sft.pk}/").content.decode()
