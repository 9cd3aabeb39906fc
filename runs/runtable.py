"""The runs list as an experiment tracker: sortable columns and the latest accuracy per eval set.

Newest first pages by keyset (any depth costs the same); any other order pages
by offset, which is fine at the scale of runs (thousands, not millions). Sorting
by a result (steps, final loss, accuracy) puts runs without one last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, ExpressionWrapper, F, FloatField, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.fields import DurationField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Lower

from runs.models import Evaluation, Run
from tunixrt.pagination import InvalidPage, keyset_page

PAGE = 50
EVAL_COLUMNS = 3  # the eval sets with the most evaluated runs get a column each
DEFAULT_SORT = "newest"


@dataclass(frozen=True)
class Column:
    key: str  # the sort key (?sort=key, ?sort=-key)
    label: str


COLUMNS = [
    Column("newest", "Run"),
    Column("status", "Status"),
    Column("dataset", "Dataset"),
    Column("base_model", "Base model"),
    Column("method", "Method"),
    Column("steps", "Steps"),
    Column("final_loss", "Final loss"),
    Column("tokens_per_s", "Tokens/s"),
    Column("duration", "Duration"),
]


def eval_columns() -> list[str]:
    """Names of the eval sets most runs were evaluated on (trained models, latest evaluations)."""
    return list(
        Evaluation.objects.filter(is_latest=True, baseline=False)
        .values("eval_set__name")
        .annotate(n=Count("id"))
        .order_by("-n", "eval_set__name")
        .values_list("eval_set__name", flat=True)[:EVAL_COLUMNS]
    )


def _accuracy(eval_set: str) -> Subquery:
    return Subquery(
        Evaluation.objects.filter(run=OuterRef("pk"), eval_set__name=eval_set, is_latest=True, baseline=False)
        .order_by("-finished_at")
        .values("accuracy")[:1]
    )


def _order(qs: QuerySet[Run], sort: str, eval_sets: list[str]) -> QuerySet[Run]:
    """`qs` ordered by `sort` ("-" prefix: descending); a ValueError names what is accepted."""
    descending = sort.startswith("-")
    key = sort.removeprefix("-")
    expression: Any
    if key == "newest":
        return qs.order_by("created_at", "id") if descending else qs.order_by("-created_at", "-id")
    if key == "name":
        expression = Lower("name")
    elif key in ("status", "base_model", "method"):
        expression = F(key)
    elif key == "dataset":
        qs = qs.order_by(*(("-" if descending else "") + f for f in ("dataset__name", "dataset__version")), "-id")
        return qs
    elif key == "steps":
        expression = Cast(KT("summary__steps_done"), IntegerField())
    elif key == "final_loss":
        expression = Cast(KT("summary__final_train_loss"), FloatField())
    elif key == "tokens_per_s":
        expression = Cast(KT("summary__tokens_per_s"), FloatField())
    elif key == "duration":
        expression = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    elif key.startswith("acc:") and key[4:] in eval_sets:
        expression = _accuracy(key[4:])
    else:
        accepted = ", ".join([c.key for c in COLUMNS] + ["name"] + [f"acc:{name}" for name in eval_sets])
        raise ValueError(f"Unknown sort {sort!r}; use one of {accepted} (a leading - reverses it).")
    ordered = expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
    return qs.order_by(ordered, "-id")


def page(qs: QuerySet[Run], sort: str, cursor: str | None) -> tuple[list[Run], str | None, list[str]]:
    """One page of runs in `sort` order, the next cursor, and the eval-set columns (accuracy attached)."""
    eval_sets = eval_columns()
    sort = sort or DEFAULT_SORT
    if sort == DEFAULT_SORT:
        rows, next_cursor = keyset_page(qs, cursor, PAGE)
    else:
        ordered = _order(qs, sort, eval_sets)
        offset = 0
        if cursor:
            if not cursor.startswith("o") or not cursor[1:].isdigit() or len(cursor) > 12:
                raise InvalidPage("cursor", "Invalid cursor.")
            offset = int(cursor[1:])
        rows = list(ordered[offset : offset + PAGE + 1])
        next_cursor = f"o{offset + PAGE}" if len(rows) > PAGE else None
        rows = rows[:PAGE]
    attach_accuracies(rows, eval_sets)
    return rows, next_cursor, eval_sets


def attach_accuracies(rows: list[Run], eval_sets: list[str]) -> None:
    """Set `run.accuracies` to the latest accuracy on each of `eval_sets` (None where not evaluated)."""
    found: dict[tuple[int, str], float | None] = {}
    if rows and eval_sets:
        for run_id, name, accuracy in Evaluation.objects.filter(
            run__in=rows, eval_set__name__in=eval_sets, is_latest=True, baseline=False
        ).values_list("run_id", "eval_set__name", "accuracy"):
            found[(run_id, name)] = accuracy
    for run in rows:
        run.accuracies = [found.get((run.pk, name)) for name in eval_sets]  # type: ignore[attr-defined]
