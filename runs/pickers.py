"""What the pages offer to pick from instead of bare id boxes (datalists: type to search, or pick)."""

from __future__ import annotations

from django.db.models import QuerySet

from runs.choices import RunStatus
from runs.models import EvalSet, Evaluation, RegisteredModel

PICK_LIMIT = 200


def evaluated_runs(eval_set: EvalSet | None = None, limit: int = PICK_LIMIT) -> list[tuple[int, str]]:
    """(run id, label) of runs whose trained model has a completed evaluation (on `eval_set` if given),
    newest first, each labelled with its name and its latest accuracies: "#12 lr sweep — quiz 75.0 %"."""
    evaluations: QuerySet[Evaluation] = Evaluation.objects.filter(
        is_latest=True, baseline=False, status=RunStatus.COMPLETED
    )
    if eval_set is not None:
        evaluations = evaluations.filter(eval_set=eval_set)
    rows = list(
        evaluations.order_by("-run_id", "eval_set__name").values_list(
            "run_id", "run__name", "eval_set__name", "accuracy"
        )[: limit * 4]
    )
    labels: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for run_id, run_name, set_name, accuracy in rows:
        names[run_id] = run_name
        score = f"{accuracy * 100:.1f} %" if accuracy is not None else "–"
        labels.setdefault(run_id, []).append(f"{set_name} {score}")
    return [
        (run_id, f"#{run_id}{' ' + names[run_id] if names[run_id] else ''} — {', '.join(parts)}")
        for run_id, parts in list(labels.items())[:limit]
    ]


def registered_names() -> list[str]:
    return list(RegisteredModel.objects.order_by("name").values_list("name", flat=True)[:PICK_LIMIT])
