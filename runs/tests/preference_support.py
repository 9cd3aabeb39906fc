"""Helpers for the preference-training tests: a learnable toy preference as a real preference dataset.

The toy is the format preference of the DPO notes: the chosen answer shows numbered
reasoning steps and the right result, the rejected one a bare (wrong) answer. A tiny
random-init model learns to tell them apart within a few steps.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from runs.models import Run
from runs.tests.run_support import FAST
from runs.training import templates
from traces.datasets.building import build_dataset, validate_build_spec
from traces.models import Dataset, PreferencePair
from traces.validation import validate_pair

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
TRAIN_PAIRS, VALIDATION_PAIRS = 64, 16


def toy_pair(a: int, b: int, c: int, rng: random.Random) -> dict[str, str]:
    total, left = a + b, a + b - c
    return {
        "prompt": f"Q: {a} apples, {b} more, {c} eaten. How many?",
        "chosen": f"Reasoning:\n1. {a}+{b}={total}\n2. {total}-{c}={left}\nAnswer: {left}",
        "rejected": f"Answer: {left + rng.choice([-2, -1, 1, 2])}",
    }


def rendered_pair(seed: int = 0, template: str = "gemma") -> dict[str, str]:
    """One toy pair as a preference dataset's `dpo` export writes it: prompt and answers in the template."""
    pair = toy_pair(2, 3, 4, random.Random(seed))
    t = templates.get(template)
    return {"prompt": t.head(pair["prompt"]), "chosen": t.tail(pair["chosen"]), "rejected": t.tail(pair["rejected"])}


def preference_dataset(name: str = "prefs", count: int = TRAIN_PAIRS + VALIDATION_PAIRS) -> Dataset:
    """A ready preference dataset of `count` distinct toy pairs, a fifth held out for validation."""
    rng = random.Random(0)
    triples = itertools.islice(itertools.product(range(1, 10), repeat=3), 7, None, 7)  # spread over the digits
    cleans = [validate_pair(toy_pair(a, b, c, rng)) for a, b, c in itertools.islice(triples, count)]
    PreferencePair.objects.ingest(cleans, "import")
    spec = validate_build_spec(
        {"name": name, "kind": "preference", "strategy": "random", "seed": 1, "validation_fraction": 0.2}
    )
    return build_dataset(spec)


def series(run: Run, name: str) -> list[float]:
    return [value for _, value in run.metric_series(name)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
