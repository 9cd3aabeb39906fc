"""Exploring the traces: orders, how many match, their top sources and tags, neighbours.

Counting is exact up to `EXACT_COUNT_LIMIT` matching traces (a bounded
`COUNT(*)` over a `LIMIT`-ed subquery, so a filter that matches a million rows
stops at 100,001); above it PostgreSQL's planner estimate is reported and said
to be one. The source and tag facets are counted over the newest
`FACET_SCOPE` matching traces (all of them when fewer match), so they cost the
same at a million rows as at a hundred thousand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet

from traces.models import Trace
from tunixrt.pagination import NEWEST, Order, after

ORDERS: dict[str, Order] = {
    o.key: o
    for o in (
        NEWEST,
        Order("oldest", "oldest first", "created_at", descending=False),
        Order("most_steps", "most steps first", "step_count", descending=True),
        Order("fewest_steps", "fewest steps first", "step_count", descending=False),
    )
}

EXACT_COUNT_LIMIT = 100_000
FACET_SCOPE = 100_000
FACET_TOP = 12


@dataclass(frozen=True, slots=True)
class MatchCount:
    count: int
    exact: bool

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "exact": self.exact}


def count_matching(queryset: QuerySet[Trace]) -> MatchCount:
    """How many traces `queryset` holds: exact up to 100,000, PostgreSQL's estimate above."""
    qs = queryset.order_by().values("pk")
    if connection.vendor != "postgresql":
        return MatchCount(qs.count(), exact=True)
    bounded = qs[: EXACT_COUNT_LIMIT + 1].count()
    if bounded <= EXACT_COUNT_LIMIT:
        return MatchCount(bounded, exact=True)
    return MatchCount(max(_planner_rows(qs), EXACT_COUNT_LIMIT + 1), exact=False)


def _planner_rows(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def facets(queryset: QuerySet[Trace], matching: MatchCount) -> dict[str, Any]:
    """The most frequent sources and tags among the matching traces (the newest 100,000 of them)."""
    if matching.exact and matching.count <= FACET_SCOPE:
        scope = queryset.order_by().values("pk")
        scope_size = matching.count
    else:
        scope = queryset.order_by(*NEWEST.order_by).values("pk")[:FACET_SCOPE]
        scope_size = FACET_SCOPE
    sources = (
        Trace.objects.filter(pk__in=scope)
        .exclude(source="")
        .values("source")
        .annotate(count=Count("id"))
        .order_by("-count", "source")[:FACET_TOP]
    )
    return {
        "scope": scope_size,
        "sources": [{"source": row["source"], "count": row["count"]} for row in sources],
        "tags": _tag_counts(scope),
    }


def _tag_counts(scope: QuerySet[Any]) -> list[dict[str, Any]]:
    sql, params = scope.query.sql_with_params()
    table = Trace._meta.db_table
    if connection.vendor == "postgresql":
        elements = 'jsonb_array_elements_text(t."tags") AS tag(value)'
    else:
        elements = 'json_each(t."tags") AS tag'
    # Only identifiers of ours and the ORM's own compiled SQL are formatted in; values are parameters.
    query = (
        f'SELECT tag.value, COUNT(*) AS n FROM "{table}" t, {elements} '  # noqa: S608
        f'WHERE t."id" IN ({sql}) GROUP BY tag.value ORDER BY n DESC, tag.value LIMIT %s'
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [*params, FACET_TOP])
        return [{"tag": str(value), "count": int(n)} for value, n in cursor.fetchall()]


def neighbours(queryset: QuerySet[Trace], trace: Trace, order: Order) -> tuple[int | None, int | None]:
    """The ids before and after `trace` among `queryset` in `order` (None at either end)."""
    value = getattr(trace, order.field)
    base = queryset.order_by()
    following = after(base, order, value, trace.pk).values_list("pk", flat=True).first()
    preceding = after(base, order.reversed(), value, trace.pk).values_list("pk", flat=True).first()
    return preceding, following
