"""GRPO reward functions by behaviour: the judge, the SFT format, the length penalty, the weighted spec."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runs.training import rewards
from runs.training.grpo import GrpoSettings, PromptFileInvalid, read_prompts
from traces.formats import reasoning_text

SFT_TARGET = reasoning_text([{"content": "15 + 27 = 42"}, {"content": "check: 42 - 27 = 15"}], "42")


def test_the_sft_training_target_gets_full_format_marks():
    assert SFT_TARGET.startswith("Reasoning:\n1. ")
    assert rewards.format_score(SFT_TARGET) == 1.0
    # A turn-end marker (Gemma's, ChatML's) and what follows it are not part of the answer.
    assert rewards.format_score(SFT_TARGET + "<end_of_turn>\n<start_of_turn>user") == 1.0
    assert rewards.format_score(SFT_TARGET + "<|im_end|>garbage") == 1.0


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("", 0.0),
        ("the answer is 42", 0.0),
        ("Answer: 42", 0.5),  # no Reasoning line, no steps (an empty list is not numbered 1..n)
        ("Reasoning:\nAnswer: 42", 0.75),
        ("Reasoning:\n1. add\n3. add\nAnswer: 42", 0.75),  # steps out of order
        ("Reasoning:\n1. add\n2. check", 0.5),  # no answer line
        ("Reasoning:\n1. add\nAnswer:", 0.5),  # an empty answer
        ("Reasoning:\n1. add\nAnswer: 42\nmore text", 0.75),  # something after the answer
        ("1. add\nAnswer: 42", 0.75),
        ("Reasoning:\n1. add\nAnswer: 42", 1.0),
    ],
)
def test_format_gives_partial_credit_per_part(text, score):
    assert rewards.format_score(text) == score


def test_correctness_uses_the_evaluation_judge_against_each_expected_answer():
    completions = [
        "Reasoning:\n1. 15 + 27 = 42\nAnswer: 42",
        "Reasoning:\n1. 15 + 27 = 41\nAnswer: 41",
        "Answer: 42.0 apples",  # numeric match, as evaluations judge it
        "Answer: 42<end_of_turn>Answer: 7",  # the turn ends before the second answer
        "no idea",
    ]
    answers = ["42"] * len(completions)
    assert rewards.correctness([""] * 5, completions, answer=answers) == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_correctness_refuses_a_batch_without_expected_answers():
    with pytest.raises(ValueError, match="expected answer"):
        rewards.correctness(["p"], ["Answer: 1"])
    with pytest.raises(ValueError, match="2 expected answers for 1"):
        rewards.correctness(["p"], ["Answer: 1"], answer=["1", "2"])


def test_length_penalty_is_the_share_of_the_budget_used():
    length = rewards.length_penalty(len, 10)
    assert length(["p"] * 4, ["", "abcde", "a" * 10, "a" * 30]) == [0.0, -0.5, -1.0, -1.0]
    assert length(["p"], ["abcde<end_of_turn>ignored"]) == [-0.5]
    with pytest.raises(ValueError, match="budget"):
        rewards.length_penalty(len, 0)


def test_a_spec_is_validated_and_errors_name_the_field():
    assert rewards.validate_spec({"correctness": 1, "format": 0.5, "length": 0.1}) == {
        "correctness": 1.0,
        "format": 0.5,
        "length": 0.1,
    }
    with pytest.raises(rewards.RewardSpecInvalid) as bad:
        rewards.validate_spec({"correctness": -1, "format": "a lot", "style": 1.0, "length": 1e9})
    assert set(bad.value.errors) == {"rewards.correctness", "rewards.format", "rewards.style", "rewards.length"}
    assert "between 0 and 100" in bad.value.errors["rewards.correctness"]
    assert "unknown reward function" in bad.value.errors["rewards.style"]
    with pytest.raises(rewards.RewardSpecInvalid) as zero:
        rewards.validate_spec({"correctness": 0.0})
    assert zero.value.errors == {"rewards": "at least one reward weight must be above 0"}
    empties: list[Any] = [{}, [], "correctness", None]
    for empty in empties:
        with pytest.raises(rewards.RewardSpecInvalid, match="rewards"):
            rewards.validate_spec(empty)
    with pytest.raises(rewards.RewardSpecInvalid, match=r"rewards\.format: the weight must be a number"):
        rewards.validate_spec({"format": True})


def test_the_reward_set_weights_each_function_and_keeps_raw_scores_per_batch():
    reward_set = rewards.RewardSet({"correctness": 2.0, "format": 0.5, "length": 0.0}, count_tokens=len, max_tokens=8)
    functions = reward_set.tunix_functions()
    assert [f.__name__ for f in functions] == ["correctness", "format"]  # zero weights are left out
    completions = ["Reasoning:\n1. add\nAnswer: 4", "Answer: 5"]
    kwargs = {"answer": ["4", "4"], "mode": "train"}
    outputs = [f(prompts=["q", "q"], completions=completions, **kwargs) for f in functions]
    assert outputs == [[2.0, 0.0], [0.5, 0.25]]
    (batch,) = reward_set.batches
    assert batch["scores"] == {"correctness": [1.0, 0.0], "format": [1.0, 0.5]}
    assert batch["total"] == [2.5, 0.25]
    assert batch["answers"] == ["4", "4"]


def test_settings_come_from_the_job_and_are_checked_by_name(tmp_path):
    job = {"grpo_beta": 0.1, "kl_mode": "low_var_kl", "num_generations": 4, "rewards": {"format": 1.0}}
    settings = GrpoSettings.from_job(job)
    assert (settings.beta, settings.kl_mode, settings.num_generations) == (0.1, "low_var_kl", 4)
    assert GrpoSettings.from_job({"method": "lora"}).lora is True
    for bad, field in [
        ({"num_generations": 1}, "num_generations"),
        ({"kl_mode": "l2"}, "kl_mode"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": 0.0}, "temperature"),
        ({"rewards": {"style": 1.0}}, "rewards.style"),
    ]:
        with pytest.raises(ValueError, match=field):
            GrpoSettings.from_job(bad)


def test_the_prompt_file_names_a_bad_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "What is 1 + 1?", "answer": "2"}) + "\n\n")
    assert read_prompts(path) == [{"prompt": "What is 1 + 1?", "answer": "2"}]
    for line, reason in [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        (json.dumps({"prompt": "q"}), "answer must be non-empty text"),
        (json.dumps({"prompt": " ", "answer": "2"}), "prompt must be non-empty text"),
    ]:
        path.write_text(json.dumps({"prompt": "q", "answer": "1"}) + "\n" + line + "\n")
        with pytest.raises(PromptFileInvalid, match=f"prompts.jsonl:2: {reason}"):
            read_prompts(path)


def test_the_grpo_estimate_is_an_sft_step_over_every_rollout_plus_the_reference_and_kv_cache():
    from runs.training import estimates
    from runs.training.grpo import GRPO_STEP_FACTOR, does_not_fit, estimate
    from runs.training.job import PRESETS

    cfg = PRESETS["tiny"]
    settings = GrpoSettings(batch_size=4, num_generations=8, max_tokens_to_generate=48)
    common: dict[str, Any] = {
        "prompt_length": 72,
        "dtype": "float32",
        "devices": 1,
        "device_memory": None,
        "platform": "cpu",
    }
    full = estimate(settings, cfg, 328_832, 328_832, **common)
    sft = estimates.run_estimate(
        estimates.ModelShape.from_config(cfg),
        328_832,
        328_832,
        lora=False,
        batch_size=32,
        seq_len=120,
        dtype="float32",
        devices=1,
        device_memory=None,
        platform="cpu",
    )
    assert (full["rollouts_per_step"], full["tokens_per_step"]) == (32, 32 * 120)
    assert full["estimated_seconds_per_step"] == pytest.approx(
        sft["estimated_seconds_per_step"] * GRPO_STEP_FACTOR, abs=1e-4
    )
    assert full["reference_mb"] == round(328_832 * 4 / estimates.MB, 1)  # the frozen copy a full fine-tune keeps
    assert full["kv_cache_mb"] > 0
    assert full["total_mb"] == pytest.approx(sft["total_mb"] + full["reference_mb"] + full["kv_cache_mb"], abs=0.2)
    assert full["fits"] is None  # no device memory known

    lora = estimate(GrpoSettings(lora=True, batch_size=4, num_generations=8), cfg, 340_000, 11_168, **common)
    assert lora["reference_mb"] == 0.0  # the adapter's base is the reference
    more = estimate(
        GrpoSettings(batch_size=4, num_generations=16, max_tokens_to_generate=48), cfg, 328_832, 328_832, **common
    )
    assert more["kv_cache_mb"] > full["kv_cache_mb"] and more["total_mb"] > full["total_mb"]

    small = estimate(settings, cfg, 328_832, 328_832, **{**common, "device_memory": 200 * estimates.MB})
    assert small["fits"] is False
    assert "32 rollouts of 120 tokens" in does_not_fit(small)
    assert "num_generations" in does_not_fit(small)
