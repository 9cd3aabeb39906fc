"""GRPO reward functions and the weighted reward a run is trained on.

Each function has Tunix's reward signature, `fn(prompts, completions, **kwargs)
-> list[float]`, one value per completion; `kwargs` holds the batch's other
columns repeated once per generation (here `answer`, the item's expected final
answer). Every function scores in a fixed range:

- `correctness` (0 or 1): the evaluation judge (runs.evaluation.judging, the
  same extraction and exact-or-numeric match evaluations use) against the
  expected answer.
- `format` (0 to 1): the shape SFT teaches (traces.datasets.exporting
  reasoning_text): a `Reasoning:` line, steps numbered 1., 2., … in order, an
  `Answer:` line with an answer, and nothing after it. Partial credit per part,
  so a policy that gets some of it right sees a gradient.
- `length` (-1 to 0): minus the share of the generation budget a completion
  used (tokens / max_tokens_to_generate), a penalty for rambling.

A spec such as `{"correctness": 1.0, "format": 0.5, "length": 0.1}` names the
functions and their weights; `validate_spec` checks it (errors name the field)
and `RewardSet` turns it into the list of weighted functions Tunix sums, while
keeping each function's raw scores of the latest batch for the run's metrics.

Imports neither Django nor JAX.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runs.evaluation.judging import extract_answer, judge

RewardFn = Callable[..., list[float]]
MAX_WEIGHT = 100.0
DEFAULT_SPEC: dict[str, float] = {"correctness": 1.0, "format": 0.5, "length": 0.0}

_TURN_END = re.compile(r"<end_of_turn>|<\|im_end\|>|<\|eot_id\|>|<\|endoftext\|>|<\|end_of_text\|>|<eos>|</s>")
_STEP = re.compile(r"(\d+)\.\s+\S")
_ANSWER_LINE = re.compile(r"answer\s*[:：]\s*(\S.*)?$", re.IGNORECASE)


class RewardSpecInvalid(ValueError):
    """A reward spec that cannot be used; `errors` maps each bad field to its reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors.items()))
        self.errors = errors


def _answers(kwargs: Mapping[str, Any], count: int) -> list[str]:
    answers = kwargs.get("answer")
    if answers is None:
        raise ValueError("The correctness reward needs each item's expected answer (the batch's `answer` column).")
    values = [str(a) for a in list(answers)]
    if len(values) != count:
        raise ValueError(f"{len(values)} expected answers for {count} completions.")
    return values


def _turn_text(completion: str) -> str:
    """The model's turn: everything before the first end-of-turn marker."""
    return _TURN_END.split(completion, maxsplit=1)[0]


def correctness(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 when the judge accepts the completion's answer as the item's expected answer, else 0.0."""
    expected = _answers(kwargs, len(completions))
    return [
        1.0 if judge(extract_answer(text)[0], want).correct else 0.0
        for text, want in zip(completions, expected, strict=True)
    ]


def format_score(completion: str) -> float:
    """0 to 1 in quarters: `Reasoning:` first, numbered steps 1..n, an `Answer:` line, nothing after it."""
    lines = [line.strip() for line in _turn_text(completion).strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return 0.0
    score = 0.0
    starts_with_reasoning = lines[0].casefold() == "reasoning:"
    if starts_with_reasoning:
        score += 0.25
    body = lines[1:] if starts_with_reasoning else lines
    answer_at = next((i for i, line in enumerate(body) if _ANSWER_LINE.match(line)), None)
    steps = body if answer_at is None else body[:answer_at]
    numbers = [int(m.group(1)) if (m := _STEP.match(line)) else None for line in steps]
    if numbers and numbers == list(range(1, len(numbers) + 1)):
        score += 0.25
    if answer_at is not None:
        match = _ANSWER_LINE.match(body[answer_at])
        if match and match.group(1):
            score += 0.25
            if answer_at == len(body) - 1:
                score += 0.25
    return score


def format_reward(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
    """The SFT target shape, `Reasoning:` / `1. …` / `Answer: …`, scored 0 to 1 (see format_score)."""
    return [format_score(text) for text in completions]


def length_penalty(count_tokens: Callable[[str], int], budget: int) -> RewardFn:
    """`length`: minus the share of `budget` tokens a completion used (0 for empty, -1 at the budget)."""
    if budget < 1:
        raise ValueError("The length penalty needs a token budget of at least 1.")

    def length(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
        return [-min(1.0, count_tokens(_turn_text(text)) / budget) for text in completions]

    return length


def validate_spec(spec: Any, field: str = "rewards") -> dict[str, float]:
    """The spec as {name: weight}; raises RewardSpecInvalid naming `field.name` for each bad entry.

    Names are the functions above; weights are finite numbers in [0, MAX_WEIGHT]; at least one
    weight must be positive (an all-zero reward gives GRPO nothing to learn from).
    """
    if not isinstance(spec, Mapping) or not spec:
        raise RewardSpecInvalid(
            {field: f'a non-empty object of reward weights, e.g. {{"correctness": 1.0}}; known: {", ".join(NAMES)}'}
        )
    errors: dict[str, str] = {}
    weights: dict[str, float] = {}
    for name, weight in spec.items():
        key = f"{field}.{name}"
        if name not in NAMES:
            errors[key] = f"unknown reward function; use one of {', '.join(NAMES)}"
            continue
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            errors[key] = "the weight must be a number"
            continue
        if not 0.0 <= float(weight) <= MAX_WEIGHT:
            errors[key] = f"the weight must be between 0 and {MAX_WEIGHT:g}"
            continue
        weights[str(name)] = float(weight)
    if not errors and not any(w > 0 for w in weights.values()):
        errors[field] = "at least one reward weight must be above 0"
    if errors:
        raise RewardSpecInvalid(errors)
    return weights


NAMES: tuple[str, ...] = ("correctness", "format", "length")


class RewardSet:
    """The weighted reward functions of one run, for Tunix's GRPOLearner(reward_fns=…).

    Tunix sums the functions' outputs, so each is wrapped to return weight × score under its
    own name (Tunix logs `rewards/<name>`). Each scored batch is queued in `batches` with its raw
    (unweighted) scores and weighted totals, for the run's per-function metrics and samples.
    """

    def __init__(self, spec: Mapping[str, float], *, count_tokens: Callable[[str], int], max_tokens: int) -> None:
        self.weights = validate_spec(spec)
        self.count_tokens = count_tokens
        base: dict[str, RewardFn] = {
            "correctness": correctness,
            "format": format_reward,
            "length": length_penalty(count_tokens, max_tokens),
        }
        self.functions = {name: base[name] for name in self.weights if self.weights[name] > 0}
        # One record per scored batch, oldest first: prompts, completions, answers, raw scores, totals.
        self.batches: deque[dict[str, Any]] = deque(maxlen=64)
        self._pending: dict[str, list[float]] = {}

    def score(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> dict[str, list[float]]:
        """Each function's raw scores (zero-weight functions left out)."""
        return {name: fn(prompts, completions, **kwargs) for name, fn in self.functions.items()}

    def total(self, scores: Mapping[str, Sequence[float]]) -> list[float]:
        columns = [[self.weights[name] * v for v in values] for name, values in scores.items()]
        return [sum(row) for row in zip(*columns, strict=True)]

    def tunix_functions(self) -> list[RewardFn]:
        """One weighted function per reward, named as the reward (Tunix's metric name)."""
        return [self._weighted(name, fn) for name, fn in self.functions.items()]

    def _weighted(self, name: str, fn: RewardFn) -> RewardFn:
        weight = self.weights[name]

        last = list(self.functions)[-1]

        def weighted(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
            raw = [float(v) for v in fn(prompts, completions, **kwargs)]
            self._pending[name] = raw
            if name == last:  # Tunix calls the functions in order: the batch is complete
                scores, self._pending = self._pending, {}
                self.batches.append(
                    {
                        "prompts": [str(p) for p in prompts],
                        "completions": [str(c) for c in completions],
                        "answers": [str(a) for a in list(kwargs.get("answer", []))],
                        "scores": scores,
                        "total": self.total(scores),
                    }
                )
            return [weight * v for v in raw]

        weighted.__name__ = name
        weighted.__qualname__ = name
        return weighted
