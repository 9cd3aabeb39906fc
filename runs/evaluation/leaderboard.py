"""The leaderboard (each run's latest evaluation on a set, best first) and run-vs-run comparison."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import QuerySet

from runs.choices import RunStatus
from runs.evaluation.running import EvaluationConflict
from runs.models import EvalItem, EvalSet, Evaluation, Prediction, Run
from traces.models import dataset_key_q


def leaderboard(
    eval_set: EvalSet, *, dataset: str = "", base_model: str = "", baseline: bool = False
) -> QuerySet[Evaluation]:
    """One row per run: its latest completed evaluation on `eval_set`, best first."""
    qs = (
        Evaluation.objects.filter(eval_set=eval_set, is_latest=True, baseline=baseline)
        .select_related("run", "run__dataset")
        # Rows only need these: never drag scorecards, run summaries or output tails along.
        .only(
            "id", "run_id", "eval_set_id", "baseline", "accuracy", "correct", "total", "finished_at", "created_at",
            "run__id", "run__name", "run__base_model", "run__method", "run__dataset__name", "run__dataset__version",
        )
    )
    if dataset:
        qs = qs.filter(dataset_key_q(dataset, "run__dataset__"))
    if base_model:
        qs = qs.filter(run__base_model=base_model)
    return qs.order_by("-accuracy", "-finished_at", "-id")


def newest_results_set(eval_sets: list[EvalSet]) -> EvalSet | None:
    """The set of the newest completed evaluation (what the leaderboard opens on), else the first.

    Newest by id: the primary key's index answers it at any table size (finished_at has none).
    """
    newest = (
        Evaluation.objects.filter(status=RunStatus.COMPLETED)
        .order_by("-id")
        .values_list("eval_set_id", flat=True)
        .first()
    )
    by_id = {s.pk: s for s in eval_sets}
    if newest in by_id:
        return by_id[newest]
    return eval_sets[0] if eval_sets else None


def latest_evaluation(run: Run, eval_set: EvalSet, *, baseline: bool = False) -> Evaluation | None:
    return Evaluation.objects.filter(run=run, eval_set=eval_set, baseline=baseline, is_latest=True).first()


def compare_runs(eval_set: EvalSet, run_a: Run, run_b: Run) -> dict[str, Any]:
    """Item by item: improved (A wrong, B right), regressed (A right, B wrong), unchanged."""
    a = latest_evaluation(run_a, eval_set)
    b = latest_evaluation(run_b, eval_set)
    if a is None or b is None:
        missing = [str(r.pk) for r, e in ((run_a, a), (run_b, b)) if e is None]
        raise EvaluationConflict(f"No completed evaluation on {eval_set.name} for run {', '.join(missing)}.")
    by_item: dict[int, dict[str, Any]] = defaultdict(dict)
    for side, evaluation in (("a", a), ("b", b)):
        for item_id, answer, correct in Prediction.objects.filter(evaluation=evaluation).values_list(
            "item_id", "extracted_answer", "correct"
        ):
            by_item[item_id][side] = (answer, correct)
    items = {i.pk: i for i in EvalItem.objects.filter(eval_set=eval_set)}
    rows = []
    counts = {"improved": 0, "regressed": 0, "unchanged": 0}
    for item_pk, sides in sorted(by_item.items(), key=lambda kv: items[kv[0]].position):
        a_ans, a_ok = sides.get("a", ("", False))
        b_ans, b_ok = sides.get("b", ("", False))
        change = "improved" if b_ok and not a_ok else "regressed" if a_ok and not b_ok else "unchanged"
        counts[change] += 1
        item = items[item_pk]
        rows.append(
            {
                "item_id": item.item_id,
                "prompt": item.prompt,
                "expected_answer": item.expected_answer,
                "a_answer": a_ans,
                "a_correct": a_ok,
                "b_answer": b_ans,
                "b_correct": b_ok,
                "change": change,
            }
        )
    return {"a": a, "b": b, "counts": counts, "items": rows}
