"""Preference pairs generated from two evaluations on one eval set.

For every item one evaluation answered correctly and the other wrongly, the
correct generation is chosen over the wrong one for the item's prompt: a trained
run against its base (the run's baseline evaluation), or two runs. Each side is
the model's own output cut at its end-of-turn marker (what the model said in its
turn, ready for the `dpo` export to wrap in a chat template).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from runs.choices import RunStatus
from runs.models import EvalItem, Evaluation, Prediction
from runs.training import templates
from traces.choices import PairSource
from traces.models import PreferencePair
from traces.validation import CleanPair, PairInvalid, validate_pair

# Every template's end-of-turn markers: a generation is cut at the first one (the sampler may run past it).
STOP_STRINGS = tuple(dict.fromkeys(s for t in templates.TEMPLATES.values() for s in t.stop))


class GenerationInvalid(ValueError):
    """The two evaluations cannot be paired; `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(slots=True)
class GeneratedPairs:
    """What generating pairs from two evaluations did."""

    compared: int = 0  # items both evaluations answered
    disagreements: int = 0  # items one answered correctly and the other did not
    created: int = 0
    duplicates: int = 0  # pairs stored before (generated earlier, or the same texts from elsewhere)
    skipped: int = 0  # disagreements whose outputs make no valid pair (blank, identical once cut, too long)
    ids: list[int] = field(default_factory=list)


def model_turn(raw_output: str) -> str:
    """The generation up to its first end-of-turn marker, without surrounding whitespace."""
    end = len(raw_output)
    for stop in STOP_STRINGS:
        at = raw_output.find(stop)
        if at != -1:
            end = min(end, at)
    return raw_output[:end].strip()


def check_evaluations(first: Evaluation, second: Evaluation) -> None:
    errors: dict[str, list[str]] = {}
    for name, evaluation in (("evaluation", first), ("other", second)):
        if evaluation.status != RunStatus.COMPLETED:
            errors[name] = [f"Evaluation {evaluation.pk} is {evaluation.get_status_display().lower()}, not completed."]
    if first.pk == second.pk:
        errors["other"] = ["Pick two different evaluations."]
    elif first.eval_set_id != second.eval_set_id:
        errors["other"] = [
            f"Evaluation {second.pk} is on another eval set than evaluation {first.pk}; pairs need the same items."
        ]
    if errors:
        raise GenerationInvalid(errors)


def pairs_from_evaluations(first: Evaluation, second: Evaluation, user: Any = None) -> GeneratedPairs:
    """Store a preference pair for each item one evaluation got right and the other wrong (idempotent).

    Raises GenerationInvalid when the evaluations are not both completed and on one eval set.
    """
    check_evaluations(first, second)
    outputs: dict[int, dict[int, tuple[str, str, bool]]] = {}
    for evaluation in (first, second):
        rows = Prediction.objects.filter(evaluation=evaluation).values_list(
            "item_id", "raw_output", "extracted_answer", "correct"
        )
        for item_id, raw, answer, correct in rows.iterator(chunk_size=2000):
            outputs.setdefault(item_id, {})[evaluation.pk] = (raw, answer, correct)
    items = EvalItem.objects.in_bulk([i for i, sides in outputs.items() if len(sides) == 2])
    result = GeneratedPairs()
    cleans: list[CleanPair] = []
    links: list[dict[str, Any]] = []
    max_bytes = settings.TRACE_MAX_BYTES
    for item in sorted(items.values(), key=lambda i: i.position):
        result.compared += 1
        sides = outputs[item.pk]
        right = [e for e in (first, second) if sides[e.pk][2]]
        if len(right) != 1:
            continue
        result.disagreements += 1
        chosen_eval = right[0]
        rejected_eval = second if chosen_eval is first else first
        chosen_raw, chosen_answer, _ = sides[chosen_eval.pk]
        rejected_raw, rejected_answer, _ = sides[rejected_eval.pk]
        document = {
            "prompt": item.prompt,
            "chosen": model_turn(chosen_raw),
            "rejected": model_turn(rejected_raw),
            "note": f"Evaluation {chosen_eval.pk} answered correctly, evaluation {rejected_eval.pk} did not.",
            "meta": {
                "eval_set": first.eval_set.name,
                "item_id": item.item_id,
                "expected_answer": item.expected_answer,
                "chosen_answer": chosen_answer,
                "rejected_answer": rejected_answer,
            },
        }
        try:
            clean = validate_pair(document)
        except PairInvalid:
            result.skipped += 1
            continue
        if clean.size > max_bytes:
            result.skipped += 1
            continue
        cleans.append(clean)
        links.append({"chosen_evaluation": chosen_eval, "rejected_evaluation": rejected_eval, "eval_item": item})
    if cleans:
        stored = PreferencePair.objects.ingest(cleans, PairSource.EVALUATION, user, item_links=links)
        result.created = sum(r.created for r in stored)
        result.duplicates = len(stored) - result.created
        result.ids = [r.id for r in stored]
    return result
