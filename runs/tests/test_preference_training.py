"""DPO and ORPO runs: real tiny training on a learnable format preference, through the worker."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.utils import timezone

from runs.charts import metric_panels
from runs.choices import RunStatus
from runs.evaluation.running import execute_evaluation, launch_evaluation
from runs.execution import Supervisor, execute_run
from runs.models import Prediction, Run, RunMetric
from runs.tests.eval_support import make_eval_set, record_evaluation_tasks, use_eval_folders
from runs.tests.preference_support import (
    DPO_FAST,
    TRAIN_PAIRS,
    VALIDATION_PAIRS,
    mean,
    preference_dataset,
    series,
)
from runs.tests.run_support import StepTrigger, kill_child_once_saved, log_text, make_run, output
from runs.tests.test_worker_loss import checkpoints, lose_worker, reap_runs

pytestmark = pytest.mark.django_db(transaction=True)
ON_POSTGRES_ONLY = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="more real training (LoRA, a two-run chain) than 2 CPU cores take twice; it runs on the PostgreSQL pass",
)

PREFERENCE_SERIES = (
    "train_loss",
    "train_reward_accuracy",
    "train_reward_margin",
    "train_reward_chosen",
    "train_reward_rejected",
    "train_logp_chosen",
    "train_logp_rejected",
    "learning_rate",
    "tokens_per_s",
    "eval_loss",
    "eval_reward_accuracy",
    "eval_reward_margin",
)


@pytest.fixture
def pairs(db):
    """`prefs@v1`: a preference dataset of toy pairs; runs export it as `dpo` lines like any run."""
    return preference_dataset()


def preference_run(dataset, **overrides) -> Run:
    return make_run(dataset, **{**DPO_FAST, **overrides})


def completed(run: Run) -> Run:
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, log_text(run)[-3000:])
    return run


def test_a_tiny_dpo_run_learns_the_preferred_format(pairs, page):
    run = preference_run(pairs)

    assert execute_run(run.pk) == RunStatus.COMPLETED
    run = completed(run)

    recorded = set(RunMetric.objects.filter(run=run).values_list("name", flat=True))
    assert set(PREFERENCE_SERIES) <= recorded
    accuracy, margin = series(run, "train_reward_accuracy"), series(run, "train_reward_margin")
    assert len(accuracy) == DPO_FAST["max_steps"]
    assert mean(accuracy[-4:]) > mean(accuracy[:3]) + 0.3
    assert mean(accuracy[-4:]) >= 0.9
    assert mean(margin[-4:]) > mean(margin[:3]) + 0.5
    losses = series(run, "train_loss")
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # ln 2: no preference yet
    assert losses[-1] < 0.3
    # Held out: the validation pairs are told apart too.
    assert series(run, "eval_reward_accuracy")[-1] >= 0.9
    assert run.summary["final_eval_reward_accuracy"] >= 0.9
    assert run.summary["final_train_reward_margin"] > 0.5
    assert run.summary["train_pairs"] == TRAIN_PAIRS
    assert run.summary["validation_pairs"] == VALIDATION_PAIRS
    # The worker exported the dataset's pairs in the run's template (prompt up to the model's turn).
    first = json.loads((output(run) / "data" / "train.jsonl").read_text().splitlines()[0])
    assert first["prompt"].startswith("<start_of_turn>user\nQ: ") and first["chosen"].endswith("<end_of_turn>")
    # A full fine-tune's reference is its own frozen copy of the starting model.
    assert "reference model: a frozen copy of the starting model" in log_text(run)
    assert run.summary["reference_mb"] > 0
    assert run.summary["tokens_per_step"] == 2 * DPO_FAST["batch_size"] * (
        DPO_FAST["max_prompt_length"] + DPO_FAST["max_response_length"]
    )
    final = output(run) / "final"
    assert (final / "model.safetensors").is_file()
    meta = json.loads((final / "tunixrt.json").read_text())
    assert meta["objective"] == "dpo"
    assert meta["parent_run_id"] is None
    assert run.summary["samples"][0]["prompt"].startswith("Q: ")  # the bare question, not the template
    job = json.loads((output(run) / "job.json").read_text())
    assert job["objective"] == "dpo" and job["beta"] == 0.1

    # The run page draws the preference metrics in their own panels, train and eval together.
    panels = {p.key: p for p in metric_panels([run])}
    assert {s.metric for s in panels["preference-accuracy"].series} == {
        "train_reward_accuracy",
        "eval_reward_accuracy",
    }
    assert {"train_logp_chosen", "train_logp_rejected"} <= {s.metric for s in panels["preference-logps"].series}
    html = page.get(f"/runs/{run.pk}/").content.decode()
    assert "Preference accuracy" in html
    assert '<span id="run-objective">DPO</span>' in html
    assert "Train pairs" in html


def test_an_orpo_run_trains_without_a_reference_model(pairs):
    run = preference_run(pairs, objective="orpo", learning_rate=0.003)

    assert execute_run(run.pk) == RunStatus.COMPLETED
    run = completed(run)

    assert "reference model" not in log_text(run)
    assert run.summary["reference_mb"] == 0
    losses = series(run, "train_loss")
    # ORPO's loss is the chosen answer's SFT loss plus λ·odds-ratio loss: it starts high and falls.
    assert losses[0] > 2.0
    assert mean(losses[-3:]) < 0.7 * losses[0]
    assert series(run, "train_odds_ratio")
    assert mean(series(run, "train_reward_margin")[-3:]) > mean(series(run, "train_reward_margin")[:2])
    assert (output(run) / "final" / "model.safetensors").is_file()


@ON_POSTGRES_ONLY
def test_a_lora_dpo_run_uses_the_frozen_base_as_its_reference_and_is_evaluated(pairs, settings, tmp_path, monkeypatch):
    run = preference_run(pairs, method="lora", learning_rate=0.003)

    assert execute_run(run.pk) == RunStatus.COMPLETED
    run = completed(run)

    assert "reference model: the frozen base under the LoRA adapters" in log_text(run)
    assert run.summary["reference_mb"] == 0  # shared with the policy: no second copy
    assert run.summary["trainable_parameters"] == run.summary["lora_parameters"] > 0
    accuracy, margin = series(run, "train_reward_accuracy"), series(run, "train_reward_margin")
    assert mean(accuracy[-4:]) > mean(accuracy[:3])
    assert mean(margin[-4:]) > mean(margin[:3])
    assert (output(run) / "final" / "model.safetensors").is_file()
    assert (output(run) / "final" / "adapter" / "adapter_config.json").is_file()

    # Its final model is evaluated like any run's.
    use_eval_folders(settings, tmp_path)
    record_evaluation_tasks(monkeypatch)
    evaluation = launch_evaluation(run, make_eval_set("dpo-quiz"), max_new_tokens=8)
    assert execute_evaluation(evaluation.pk) == RunStatus.COMPLETED
    evaluation.refresh_from_db()
    assert Prediction.objects.filter(evaluation=evaluation).count() == evaluation.done > 0


@ON_POSTGRES_ONLY
def test_sft_then_dpo_chains_with_the_parent_recorded(dataset, pairs, api, page):
    sft = make_run(dataset, max_steps=10, eval_every_steps=10, checkpoint_every_steps=10)
    assert execute_run(sft.pk) == RunStatus.COMPLETED
    sft = completed(sft)

    response = api.post(
        "/api/runs",
        {
            "dataset": pairs.key,
            **{k: v for k, v in DPO_FAST.items() if k != "base_model"},
            "parent": sft.pk,
            "reference_run": sft.pk,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    dpo = Run.objects.get(pk=response.json()["id"])
    assert dpo.parent == sft
    assert dpo.reference_run == sft
    assert dpo.base_model == sft.base_model  # the chain keeps its base model
    assert dpo.chat_template == sft.chat_template

    assert execute_run(dpo.pk) == RunStatus.COMPLETED
    dpo = completed(dpo)

    job = json.loads((output(dpo) / "job.json").read_text())
    sft_final = (output(sft) / "final").resolve()
    assert job["base_model"]["path"] == str(sft_final)
    assert job["reference_model"]["path"] == str(sft_final)
    assert job["parent_run_id"] == sft.pk
    assert f"reference model: run {sft.pk}" in log_text(dpo)
    assert json.loads((output(dpo) / "final" / "tunixrt.json").read_text())["parent_run_id"] == sft.pk
    assert mean(series(dpo, "train_reward_accuracy")[-4:]) > mean(series(dpo, "train_reward_accuracy")[:3])

    assert [r.pk for r in dpo.lineage()] == [sft.pk, dpo.pk]
    detail = api.get(f"/api/runs/{dpo.pk}").json()
    assert [r["id"] for r in detail["lineage"]] == [sft.pk, dpo.pk]
    assert detail["config"]["parent"] == sft.pk
    assert detail["config"]["objective"] == "dpo"
    html = page.get(f"/runs/{dpo.pk}/").content.decode()
    assert 'id="run-lineage"' in html
    assert f"/runs/{sft.pk}/" in html


def test_cancelling_a_dpo_run_stops_it_within_seconds_keeping_a_checkpoint(pairs, monkeypatch):
    run = preference_run(pairs, max_steps=2000, eval_every_steps=1000, checkpoint_every_steps=3)
    seen: dict[str, object] = {}

    def cancel(supervisor: Supervisor) -> None:
        row = Run.objects.get(pk=run.pk)
        row.cancel()
        seen["requested_at"] = timezone.now()

    trigger = StepTrigger(monkeypatch, 5, cancel)
    assert execute_run(run.pk) == RunStatus.CANCELLED
    stopped = time.monotonic()

    assert trigger.fired_at is not None and trigger.fired_step is not None
    assert stopped - trigger.fired_at < 5.0, f"took {stopped - trigger.fired_at:.1f} s to stop"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.exit_code == 0
    steps_done = run.summary["steps_done"]
    assert trigger.fired_step <= steps_done < trigger.fired_step + 20
    saved = checkpoints(run)
    assert saved and saved[-1] == steps_done
    assert not (output(run) / "final").exists()


def test_a_killed_dpo_run_resumes_from_its_checkpoint_with_metrics_at_the_right_steps(pairs, monkeypatch, sent_tasks):
    run = preference_run(pairs, max_steps=14, checkpoint_every_steps=5, eval_every_steps=7)
    trigger = StepTrigger(monkeypatch, 6, kill_child_once_saved(5))
    execute_run(run.pk)
    assert trigger.fired_step is not None
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.exit_code == -9
    saved = checkpoints(run)
    assert 5 in saved and max(saved) < 14
    first_attempt = set(RunMetric.objects.filter(run=run, name="train_reward_margin").values_list("step", flat=True))
    lose_worker(run)
    assert reap_runs()["requeued"] == 1

    assert execute_run(run.pk, task_id="again") == RunStatus.COMPLETED
    run = completed(run)
    assert run.attempt == 2
    assert run.summary["resumed_at_step"] == max(saved)
    assert f"resumed from the checkpoint at step {max(saved)}" in log_text(run)
    # The second attempt reports the steps after the checkpoint, numbered on from it.
    steps = list(RunMetric.objects.filter(run=run, name="train_reward_margin").values_list("step", flat=True))
    later = [s for s in steps if s > max(first_attempt)]
    assert later == list(range(max(first_attempt) + 1, 15))
    assert sorted(set(steps)) == list(range(1, 15))
    # The reference was rebuilt as before: the resumed policy still prefers the chosen answers.
    assert series(run, "train_reward_accuracy")[-1] >= 0.9
    assert (output(run) / "final" / "model.safetensors").is_file()


def test_a_dpo_dry_run_estimates_the_reference_and_both_answers(pairs):
    run = preference_run(pairs, mode="dry_run")
    assert execute_run(run.pk) == RunStatus.COMPLETED
    run = completed(run)
    summary = run.summary
    assert summary["ok"] is True
    assert summary["train_pairs"] == TRAIN_PAIRS
    # Chosen and rejected go through the policy together (2 × batch), prompt + answer long;
    # the reference's own weights are counted beside the policy's.
    assert summary["tokens_per_step"] == 2 * DPO_FAST["batch_size"] * (
        DPO_FAST["max_prompt_length"] + DPO_FAST["max_response_length"]
    )
    assert summary["reference_mb"] == summary["weights_mb"]
    assert summary["estimated_seconds_per_step"] > 0
    assert not (output(run) / "checkpoints").exists()


def test_a_grpo_run_goes_through_the_worker_to_the_grpo_engine(dataset):
    """The wiring: the worker writes the prompts with their expected answers and the child hands them
    to runs.training.grpo (its own tests cover the training; a dry run shows the whole path)."""
    run = make_run(dataset, objective="grpo", mode="dry_run", num_generations=2, max_tokens_to_generate=8)

    assert execute_run(run.pk) == RunStatus.COMPLETED
    run = completed(run)

    first = json.loads((output(run) / "data" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"prompt", "answer"} and first["prompt"].startswith("What is ")
    a, b = (int(x) for x in first["prompt"].removeprefix("What is ").rstrip("?").split(" + "))
    assert first["answer"] == str(a + b)  # the trace's final answer: what the correctness reward judges
    job = json.loads((output(run) / "job.json").read_text())
    assert (job["objective"], job["num_generations"], job["max_tokens_to_generate"]) == ("grpo", 2, 8)
    assert run.summary["ok"] is True
    assert "devices" in run.summary


@ON_POSTGRES_ONLY
def test_a_grpo_run_from_an_sft_parent_trains_through_the_worker(dataset):
    sft = make_run(dataset, max_steps=10, eval_every_steps=10, checkpoint_every_steps=10)
    assert execute_run(sft.pk) == RunStatus.COMPLETED
    grpo = make_run(
        dataset,
        objective="grpo",
        parent=sft.pk,
        max_steps=3,
        batch_size=2,
        num_generations=2,
        max_tokens_to_generate=8,
        checkpoint_every_steps=3,
    )

    assert execute_run(grpo.pk) == RunStatus.COMPLETED
    grpo = completed(grpo)

    assert grpo.summary["steps_done"] == 3
    assert len(series(grpo, "reward_mean")) == 3
    assert (output(grpo) / "final" / "model.safetensors").is_file()
    assert [r.pk for r in grpo.lineage()] == [sft.pk, grpo.pk]
