"""Launching DPO/ORPO runs: objectives, their hyperparameters, parent and reference runs, refused by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.charts import panel_kind
from runs.choices import RunStatus
from runs.models import Run
from runs.tests.preference_support import preference_dataset, rendered_pair
from runs.tests.run_support import finished_run
from runs.training import estimates, templates
from runs.training.data import encode_pairs
from runs.training.job import PRESETS
from runs.training.tokenizers import ByteTokenizer
from runs.validation import LaunchInvalid, validate_launch

BAD_PREFERENCE_VALUES: list[tuple[str, Any, str]] = [
    ("beta", -0.1, "between"),
    ("beta", 11, "between"),
    ("beta", "strong", "number"),
    ("lambda_orpo", -1, "between"),
    ("label_smoothing", 0.5, "between"),
    ("label_smoothing", -0.01, "between"),
    ("max_prompt_length", 4, "between"),
    ("max_prompt_length", 1.5, "whole number"),
    ("max_response_length", 9000, "between"),
    ("num_generations", 1, "between"),
    ("temperature", 0, "between"),
    ("top_p", 0, "between"),
    ("max_tokens_to_generate", 0, "between"),
    ("grpo_beta", -1, "between"),
    ("epsilon", 2, "between"),
    ("objective", "ppo", "Must be one of"),
    ("kl_mode", "js", "Must be one of"),
]


@pytest.fixture
def prefs(db: Any) -> Any:
    return preference_dataset()


def refused(data: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(LaunchInvalid) as caught:
        validate_launch(data)
    return caught.value.errors


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), BAD_PREFERENCE_VALUES)
def test_bad_preference_hyperparameters_are_refused_naming_the_field(api, prefs, field, value, message):
    body = {"dataset": prefs.key, "objective": "dpo", field: value}
    errors = refused(body)
    assert list(errors) == [field]
    assert message in errors[field][0]
    response = api.post("/api/runs", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Run.objects.exists()  # nothing stored


@pytest.mark.django_db
def test_sft_stays_the_default_and_dpo_records_its_settings(dataset, prefs):
    values = validate_launch({"dataset": dataset.key})
    assert values["objective"] == "sft"
    assert values["kl_mode"] == "kl"
    assert "parent" not in values and "reference_run" not in values
    values = validate_launch(
        {"dataset": prefs.key, "objective": "orpo", "lambda_orpo": "0.5", "max_response_length": "64"}
    )
    assert values["objective"] == "orpo"
    assert values["lambda_orpo"] == 0.5
    assert values["max_response_length"] == 64


@pytest.mark.django_db
def test_the_dataset_kind_must_match_the_objective(dataset, prefs):
    for objective in ("dpo", "orpo"):
        errors = refused({"dataset": dataset.key, "objective": objective})
        assert list(errors) == ["dataset"]
        assert errors["dataset"] == [
            f"Dataset {dataset.key} is a sft dataset; a {objective} run needs a preference dataset."
        ]
    for data in ({"dataset": prefs.key}, {"dataset": prefs.key, "objective": "sft"}):
        errors = refused(data)
        assert errors["dataset"] == [f"Dataset {prefs.key} is a preference dataset; a sft run needs a sft dataset."]


@pytest.mark.django_db
def test_parent_and_reference_runs_must_be_completed_training_runs_with_a_model(dataset, prefs):
    base = {"dataset": prefs.key, "objective": "dpo"}
    assert "No run 999" in refused({**base, "parent": 999})["parent"][0]
    assert "run id" in refused({**base, "parent": "first"})["parent"][0]
    failed = finished_run(dataset, RunStatus.FAILED)
    assert "not a completed training run" in refused({**base, "parent": failed.pk})["parent"][0]
    no_model = finished_run(dataset, files=False)
    assert "no final model" in refused({**base, "reference_run": no_model.pk})["reference_run"][0]
    done = finished_run(dataset)
    assert "Only a DPO run" in refused({**base, "objective": "orpo", "reference_run": done.pk})["reference_run"][0]
    errors = refused({**base, "parent": done.pk, "base_model": "small"})
    assert list(errors) == ["base_model"] and "keeps its base model 'tiny'" in errors["base_model"][0]

    values = validate_launch({**base, "parent": str(done.pk), "reference_run": done.pk})
    assert values["parent"] == done and values["reference_run"] == done
    assert values["base_model"] == done.base_model
    assert values["chat_template"] == done.chat_template


@pytest.mark.django_db
def test_launch_run_takes_the_objective_and_parent(dataset, prefs, capsys, sent_tasks):
    done = finished_run(dataset)
    call_command("launch_run", "--dataset", prefs.key, "--objective", "dpo", "--parent", str(done.pk))
    run = Run.objects.exclude(pk=done.pk).get()
    assert (run.objective, run.parent_id, run.base_model) == ("dpo", done.pk, "tiny")
    assert f"(train, dpo, tiny, from run {done.pk}, {prefs.key})" in capsys.readouterr().out
    with pytest.raises(CommandError, match="beta: Ensure this value is between 0 and 10"):
        call_command("launch_run", "--dataset", prefs.key, "--objective", "dpo", "--set", "beta=20")


@pytest.mark.django_db
def test_the_launch_form_offers_the_methods_and_marks_their_fields(page, dataset, prefs, sent_tasks):
    html = page.get("/runs/new/").content.decode()
    assert 'name="objective"' in html
    assert 'data-objectives="dpo"' in html  # beta and the reference model show for DPO only
    assert 'data-objectives="dpo orpo"' in html
    done = finished_run(dataset)
    response = page.post(
        "/runs/new/",
        {
            "dataset": prefs.key,
            "base_model": "tiny",
            "objective": "dpo",
            "method": "full",
            "parent": done.pk,
            "chat_template": "auto",
            "beta": "0.2",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = Run.objects.exclude(pk=done.pk).get()
    assert (run.objective, run.parent_id, run.beta) == ("dpo", done.pk, 0.2)


def test_pairs_are_tokenised_like_sft_with_eos_and_no_bos_before_the_answers():
    tok = ByteTokenizer()
    pair = rendered_pair()
    enc = encode_pairs([pair, {**pair, "rejected": pair["chosen"]}], tok, 128, 64, "gemma")
    assert enc.count == 1 and enc.dropped == 1  # identical answers teach nothing
    prompt = [int(i) for i in enc.prompt_ids[0] if i != tok.pad_id()]
    assert enc.prompt_ids[0][0] == tok.pad_id()  # left-padded
    assert prompt[0] == tok.bos_id()
    assert tok.decode(prompt[1:]) == pair["prompt"]  # already rendered: not rendered twice
    chosen = [int(i) for i in enc.chosen_ids[0] if i != tok.pad_id()]
    assert chosen[0] != tok.bos_id() and chosen[-1] == tok.eos_id()
    assert tok.decode(chosen[:-1]) == pair["chosen"]  # already closed: the end-of-turn is not doubled
    assert pair["chosen"].endswith("Answer: 1<end_of_turn>")
    assert enc.prompts == ["Q: 2 apples, 3 more, 4 eaten. How many?"]  # the bare question, for samples
    # A bare prompt and an already closed answer are accepted as well.
    bare = encode_pairs([{"prompt": "Q: hi", "chosen": "ok<end_of_turn>", "rejected": "no"}], tok, 64, 48, "gemma")
    assert tok.decode([int(i) for i in bare.prompt_ids[0][1:] if i != tok.pad_id()]).endswith(
        templates.get("gemma").head("Q: hi")
    )
    assert tok.decode([int(i) for i in bare.chosen_ids[0] if i != tok.pad_id()][:-1]) == "ok<end_of_turn>"
    # Long prompts lose their start (the BOS stays), long answers their end.
    long = encode_pairs([{"prompt": "x" * 200, "chosen": "y" * 100, "rejected": "z"}], tok, 16, 8, "plain")
    assert long.truncated == 1
    assert long.prompt_ids[0][0] == tok.bos_id() and tok.decode(long.prompt_ids[0][1:]) == "x" * 14 + "\n"
    assert np.count_nonzero(long.chosen_ids[0] != tok.pad_id()) == 8


def test_dpo_estimates_count_the_reference_model():
    preset = PRESETS["tiny"]
    shape = estimates.ModelShape(
        preset.num_layers,
        preset.embed_dim,
        preset.hidden_dim,
        preset.num_heads,
        preset.head_dim,
        preset.num_kv_heads,
        preset.vocab_size,
        True,
    )
    kwargs: dict[str, Any] = {
        "lora": False,
        "batch_size": 16,
        "seq_len": 112,
        "dtype": "float32",
        "devices": 1,
        "device_memory": None,
        "platform": "cpu",
    }
    plain = estimates.run_estimate(shape, 328_832, 328_832, **kwargs)
    copy = estimates.run_estimate(shape, 328_832, 328_832, **kwargs, reference="copy")
    assert plain["reference_mb"] == 0
    assert copy["reference_mb"] == copy["weights_mb"] > 0
    assert copy["total_mb"] > plain["total_mb"]
    assert copy["model_flops_per_step"] > plain["model_flops_per_step"]
    lora = {**kwargs, "lora": True}
    shared = estimates.run_estimate(shape, 400_000, 71_168, **lora, reference="shared")
    assert shared["reference_mb"] == 0
    assert (
        shared["model_flops_per_step"] > estimates.run_estimate(shape, 400_000, 71_168, **lora)["model_flops_per_step"]
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("train_reward_accuracy", "preference-accuracy"),
        ("eval_reward_accuracy", "preference-accuracy"),
        ("train_reward_margin", "preference-margin"),
        ("train_reward_chosen", "preference-rewards"),
        ("eval_reward_rejected", "preference-rewards"),
        ("train_logp_rejected", "preference-logps"),
        ("train_odds_ratio", "preference-odds"),
    ],
)
def test_preference_metrics_get_their_panels(name, key):
    assert panel_kind(name)[1] == key


@pytest.mark.django_db
def test_retrying_a_chained_run_keeps_its_parent_and_objective(api, dataset, prefs, sent_tasks, user):
    parent = finished_run(dataset)
    child = finished_run(prefs, RunStatus.FAILED, objective="dpo", parent=parent.pk, beta=0.3, created_by=user)
    response = api.post(f"/api/runs/{child.pk}/retry")
    assert response.status_code == 201, response.json()
    again = Run.objects.get(pk=response.json()["id"])
    assert (again.objective, again.parent_id, again.beta, again.retry_of_id) == ("dpo", parent.pk, 0.3, child.pk)
    assert response.json()["config"]["parent"] == parent.pk


@pytest.mark.django_db
def test_runs_are_filtered_by_training_method(api, dataset, prefs):
    sft = finished_run(dataset, files=False)
    dpo = finished_run(prefs, files=False, objective="dpo")
    assert [r["id"] for r in api.get("/api/runs?objective=dpo").json()["results"]] == [dpo.pk]
    assert [r["id"] for r in api.get("/api/runs?objective=sft").json()["results"]] == [sft.pk]
    assert api.get("/api/runs?objective=ppo").status_code == 400


@pytest.mark.django_db
def test_compare_shows_the_training_method_and_parent(page, dataset, prefs):
    sft = finished_run(dataset)
    dpo = finished_run(prefs, objective="dpo", parent=sft.pk, beta=0.25)
    response = page.get("/runs/compare/", {"id": [sft.pk, dpo.pk]})
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.context["rows"]}
    assert [v.split(" ")[0] for v in rows["objective"]["values"]] == ["SFT", "DPO"] and rows["objective"]["differs"]
    assert rows["parent"]["values"] == [None, sft.title]
    assert rows["beta"]["values"] == [0.1, 0.25]
