"""Helpers for the preference-training tests: a learnable toy preference and its pair files.

The toy is the format preference of the DPO notes: the chosen answer shows numbered
reasoning steps and the right result, the rejected one a bare (wrong) answer. A tiny
random-init model learns to tell them apart within a few steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from runs.models import Run
from runs.tests.run_support import FAST
from runs.training import folders, templates
from traces.models import Dataset

# Every preference test uses the same shapes, so the shared JAX compile cache serves them all.
DPO_FAST: dict[str, Any] = {
    **FAST,
    "objective": "dpo",
    "max_steps": 12,
    "learning_rate": 0.001,
    "eval_every_steps": 6,
    "checkpoint_every_steps": 6,
    "max_prompt_length": 112,
    "max_response_length": 64,
}


def toy_pair(rng: random.Random, template: str = "gemma") -> dict[str, str]:
    a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    total, left = a + b, a + b - c
    prompt = f"Q: {a} apples, {b} more, {c} eaten. How many?"
    return {
        # As a preference dataset's `dpo` export carries it: the prompt rendered in the run's template.
        "prompt": templates.render(template, prompt)[0],
        "chosen": f"Reasoning:\n1. {a}+{b}={total}\n2. {total}-{c}={left}\nAnswer: {left}",
        "rejected": f"Answer: {left + rng.choice([-2, -1, 1, 2])}",
    }


def as_preference_dataset(dataset: Dataset) -> Dataset:
    """Mark the dataset a preference one where datasets have a kind (they gain it with preference datasets)."""
    if any(f.name == "kind" for f in Dataset._meta.get_fields()):
        kind: dict[str, Any] = {"kind": "preference"}
        Dataset.objects.filter(pk=dataset.pk).update(**kind)
        dataset.refresh_from_db()
    return dataset


def write_pairs(run: Run, train: int = 64, validation: int = 16, seed: int = 0) -> None:
    """The run's split files as the worker exports them from a preference dataset (kept on resume)."""
    directory = Path(run.output_dir)
    folders.take(directory, run.pk, run.folder_token, first_attempt=True)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, count in (("train", train), ("validation", validation)):
        lines = [json.dumps(toy_pair(rng, run.chat_template)) + "\n" for _ in range(count)]
        (directory / "data" / f"{split}.jsonl").write_text("".join(lines))


def series(run: Run, name: str) -> list[float]:
    return [value for _, value in run.metric_series(name)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
