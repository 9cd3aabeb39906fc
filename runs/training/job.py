"""The job file the worker writes for the training child, and the model presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runs.hyperparameters import Hyperparameters


@dataclass(frozen=True, slots=True)
class Preset:
    """A random-initialised Qwen3-class decoder with a byte-level tokenizer."""

    name: str
    label: str
    num_layers: int
    embed_dim: int
    hidden_dim: int
    num_heads: int
    head_dim: int
    num_kv_heads: int
    vocab_size: int = 259
    rope_theta: int = 10_000
    norm_eps: float = 1e-6


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", "tiny — random-initialised smoke test, 0.33M params", 2, 128, 256, 4, 32, 2),
    "small": Preset("small", "small — random-initialised smoke test, 8.8M params", 4, 384, 1536, 6, 64, 2),
}


@dataclass(kw_only=True, slots=True)
class JobSpec(Hyperparameters):
    """Everything the child needs (the run's hyperparameters and more); written as JSON into its folder."""

    run_id: int
    mode: str
    output_dir: str
    train_file: str
    validation_file: str
    base_model: dict[str, Any]
    method: str = "full"
    objective: str = "sft"  # runs.choices.RunObjective
    kl_mode: str = "kl"  # GRPO's KL estimator (runs.choices.KlMode)
    # GRPO's reward, {function: weight} (runs.training.rewards); None: the engine's DEFAULT_SPEC.
    rewards: dict[str, float] | None = None
    # DPO's frozen reference when it is not the starting model: {"kind": "local", "path": ...}.
    reference_model: dict[str, Any] | None = None
    parent_run_id: int | None = None  # the run whose final model `base_model` is
    chat_template: str = "gemma"
    device: str = "auto"  # runs.training.devices.DEVICE_CHOICES
    dtype: str = "float32"  # runs.training.devices.DTYPE_CHOICES: parameter dtype (presets too)
    sample_prompts: list[str] = field(default_factory=list)
    # {platform: {"factor", "runs"}} from this installation's completed runs (runs.training.estimates).
    step_time_calibration: dict[str, dict[str, float]] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> JobSpec:
        return cls(**json.loads(path.read_text()))
