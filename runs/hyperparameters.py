"""A training run's hyperparameters, declared once.

Each field of `Hyperparameters` carries its type, default, allowed range and
help text. Everything else derives from it: the Run model's columns
(`model_field`), launch validation (`BOUNDS`, used by runs.validation), the API's
launch serializer, the launch form, and the job file the training child reads
(`runs.training.job.JobSpec` extends this class). Adding a hyperparameter is one
line here, a generated migration, and the code that uses it.

No Django import at module level: the training child imports this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Bound:
    kind: type
    low: float
    high: float
    default: Any
    help: str = ""


def _hp[T: (int, float)](default: T, low: T, high: T, help: str) -> T:
    bound = Bound(type(default), low, high, default, help)
    return field(default=default, metadata={"bound": bound})


@dataclass(kw_only=True, slots=True)
class Hyperparameters:
    """The tunable numbers of a run (see the module docstring)."""

    lora_rank: int = _hp(8, 1, 256, "LoRA rank")
    lora_alpha: float = _hp(16.0, 0.01, 4096.0, "LoRA alpha (scale = alpha / rank)")
    learning_rate: float = _hp(3e-3, 1e-7, 1.0, "peak learning rate (warmup, then cosine decay)")
    max_steps: int = _hp(100, 1, 1_000_000, "training steps")
    batch_size: int = _hp(8, 1, 512, "examples per step")
    max_seq_length: int = _hp(256, 16, 8192, "tokens per example (longer ones are cut)")
    warmup_steps: int = _hp(5, 0, 1_000_000, "linear warmup steps")
    weight_decay: float = _hp(0.0, 0.0, 1.0, "AdamW weight decay")
    seed: int = _hp(0, 0, 2**31 - 1, "model init and data order")
    eval_every_steps: int = _hp(20, 1, 1_000_000, "validation loss every N steps")
    checkpoint_every_steps: int = _hp(50, 1, 1_000_000, "orbax checkpoint every N steps")
    # The launch default comes from RUN_DEFAULT_TIMEOUT_SECONDS; 3600 is the column's.
    timeout_seconds: int = _hp(3600, 10, 7 * 24 * 3600, "stop the run after this long")
    # Preference training (objective dpo / orpo).
    beta: float = _hp(0.1, 0.0, 10.0, "DPO: strength of the pull towards the reference model")
    lambda_orpo: float = _hp(0.1, 0.0, 10.0, "ORPO: weight of the odds-ratio preference loss")
    label_smoothing: float = _hp(0.0, 0.0, 0.49, "DPO/ORPO: assumed share of mislabelled pairs")
    max_prompt_length: int = _hp(128, 8, 8192, "DPO/ORPO: prompt tokens kept (the start is cut)")
    max_response_length: int = _hp(128, 8, 8192, "DPO/ORPO: tokens per chosen or rejected answer (the end is cut)")
    # Reinforcement learning (objective grpo).
    num_generations: int = _hp(4, 2, 64, "GRPO: completions sampled per prompt")
    temperature: float = _hp(0.9, 0.01, 5.0, "GRPO: sampling temperature (above 0)")
    top_p: float = _hp(1.0, 0.01, 1.0, "GRPO: nucleus sampling probability mass")
    max_tokens_to_generate: int = _hp(64, 1, 8192, "GRPO: tokens generated per completion")
    grpo_beta: float = _hp(0.04, 0.0, 10.0, "GRPO: KL penalty coefficient")
    epsilon: float = _hp(0.2, 0.001, 1.0, "GRPO: clipping range of the policy ratio")


BOUNDS: dict[str, Bound] = {f.name: f.metadata["bound"] for f in dataclasses.fields(Hyperparameters)}

# Which objective each hyperparameter belongs to (the launch form shows only the run's; absent: all).
OBJECTIVE_FIELDS: dict[str, tuple[str, ...]] = {
    "beta": ("dpo",),
    "lambda_orpo": ("orpo",),
    "label_smoothing": ("dpo", "orpo"),
    "max_prompt_length": ("dpo", "orpo", "grpo"),
    "max_response_length": ("dpo", "orpo"),
    "max_seq_length": ("sft",),
    "num_generations": ("grpo",),
    "temperature": ("grpo",),
    "top_p": ("grpo",),
    "max_tokens_to_generate": ("grpo",),
    "grpo_beta": ("grpo",),
    "epsilon": ("grpo",),
}


def model_field(name: str) -> Any:
    """The Run column for one hyperparameter: its type, default, range (as validators) and help."""
    from django.core.validators import MaxValueValidator, MinValueValidator
    from django.db import models

    bound = BOUNDS[name]
    if bound.kind is int:
        validators = [MinValueValidator(int(bound.low)), MaxValueValidator(int(bound.high))]
        return models.PositiveIntegerField(default=bound.default, validators=validators, help_text=bound.help)
    validators = [MinValueValidator(bound.low), MaxValueValidator(bound.high)]
    return models.FloatField(default=bound.default, validators=validators, help_text=bound.help)


def serializer_field(name: str) -> Any:
    """The API field for one hyperparameter (optional: the declared default applies)."""
    from rest_framework import serializers

    bound = BOUNDS[name]
    if bound.kind is int:
        return serializers.IntegerField(
            required=False, min_value=int(bound.low), max_value=int(bound.high), help_text=bound.help
        )
    return serializers.FloatField(required=False, min_value=bound.low, max_value=bound.high, help_text=bound.help)
