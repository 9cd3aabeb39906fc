"""How run pages name and group what a run reports: people's labels, not snake_case keys."""

from __future__ import annotations

from typing import Any

# Keys whose generic label ("Tokens per s") would read badly.
LABELS: dict[str, str] = {
    "lora_rank": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "lora_parameters": "LoRA parameters",
    "tokens_per_s": "Tokens/s",
    "seconds_per_step": "Seconds per step",
    "peak_rss_mb": "Peak RSS (MB)",
    "peak_device_mb": "Peak device memory (MB)",
    "mfu": "Model FLOPs utilisation",
    "max_seq_length": "Max sequence length",
    "dropped_no_answer_tokens": "Dropped (no answer token left)",
    "tokens_mean": "Tokens per example (mean)",
    "pairs": "Preference pairs",
    "rewards": "Reward",
    "prompt_eval_set": "Prompt eval set",
    "dropped_identical_answers": "Dropped (chosen = rejected)",
    "tokens_max": "Tokens per example (max)",
    "ok": "Would run",
    "dtype": "Dtype",
    "chat_template": "Chat template",
    "base_model": "Base model",
    "checkpoint_steps": "Checkpoints kept (steps)",
    "resumed_at_step": "Resumed at step",
    "train_seconds": "Training time (s)",
    "wall_seconds": "Wall time (s)",
    "timeout_seconds": "Timeout (s)",
    "kv_cache_mb": "KV cache (MB)",
    "final_kl": "Final KL",
    "reward_mean_last_10": "Reward mean (last 10 steps)",
}

# The run summary in four groups, in reading order; keys not listed go to "Other".
SUMMARY_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Result", ("steps_done", "resumed_at_step", "first_train_loss", "final_train_loss", "best_train_loss",
                "final_eval_loss", "best_eval_loss", "train_perplexity", "eval_perplexity", "ok", "problem",
                "final_train_reward_accuracy", "final_eval_reward_accuracy", "final_train_reward_margin",
                "final_eval_reward_margin", "first_reward_mean", "final_reward_mean", "reward_mean_last_10",
                "final_kl", "checkpoint_steps")),
    ("Data", ("examples", "train_examples", "validation_examples", "tokens_mean", "tokens_max", "truncated",
              "dropped_no_answer_tokens", "max_seq_length", "pairs", "train_pairs", "validation_pairs",
              "dropped_identical_answers", "max_prompt_length", "max_response_length", "prompts",
              "prompt_tokens_mean", "prompt_tokens_max", "rollouts_per_step", "max_tokens_to_generate",
              "tokens_per_step")),
    ("Model", ("parameters", "base_parameters", "lora_parameters", "trainable_parameters")),
    ("Speed", ("seconds_per_step", "tokens_per_s", "mfu", "train_seconds", "wall_seconds", "peak_rss_mb",
               "peak_device_mb", "kv_cache_mb")),
]


def label(key: str) -> str:
    """A summary or config key as people write it: "final_train_loss" → "Final train loss"."""
    if key in LABELS:
        return LABELS[key]
    text = key.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def summary_groups(summary: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()) -> list[
    tuple[str, list[tuple[str, Any]]]
]:
    """(group title, [(label, value)]) for the keys present, in the groups' order; empty groups left out."""
    present = {k: v for k, v in summary.items() if k not in skip}
    groups: list[tuple[str, list[tuple[str, Any]]]] = []
    listed: set[str] = set()
    for title, keys in SUMMARY_GROUPS:
        rows = [(label(k), present[k]) for k in keys if k in present]
        listed.update(keys)
        if rows:
            groups.append((title, rows))
    other = sorted((label(k), v) for k, v in present.items() if k not in listed)
    if other:
        groups.append(("Other", other))
    return groups
