"""Exploring the traces: orders, how many match, their top sources and tags, neighbours.

Counting is exact up to `EXACT_COUNT_LIMIT` matching traces (a bounded
`COUNT(*)` over a `LIMIT`-ed subquery); above it PostgreSQL's planner estimate
is reported and said to be one. The source and tag facets are counted over the
newest `FACET_SCOPE` matching traces (all of them when fewer match), so they
cost the same at a million rows as at ten thousand (bench/bench_list.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

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
SANITY_COUNT = 1_000  # an estimate above the limit is checked against this many rows
FACET_SCOPE = 10_000
FACET_TOP = 12


@dataclass(frozen=True, slots=True)
class MatchCount:
    count: int
    exact: bool

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "exact": self.exact}


def count_matching(queryset: QuerySet[Trace]) -> MatchCount:
    """How many traces `queryset` holds: exact up to 100,000, PostgreSQL's estimate above.

    On PostgreSQL the planner's estimate comes first (one EXPLAIN, no rows read): above the
    limit it is the answer, unless a cheap look (at most 1,001 rows) shows that the planner
    guessed far too high; otherwise the rows are counted, at most 100,001 of them.
    """
    qs = queryset.order_by().values("pk")
    if connection.vendor != "postgresql":
        return MatchCount(qs.count(), exact=True)
    estimate = _planner_rows(qs)
    if estimate > EXACT_COUNT_LIMIT:
        few = qs[: SANITY_COUNT + 1].count()
        if few <= SANITY_COUNT:
            return MatchCount(few, exact=True)
        return MatchCount(estimate, exact=False)
    bounded = qs[: EXACT_COUNT_LIMIT + 1].count()
    if bounded <= EXACT_COUNT_LIMIT:
        return MatchCount(bounded, exact=True)
    return MatchCount(max(estimate, EXACT_COUNT_LIMIT + 1), exact=False)


def _planner_rows(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def facets(queryset: QuerySet[Trace], matching: MatchCount) -> dict[str, Any]:
    """The most frequent sources and tags among the newest 10,000 matching traces (all when fewer).

    One statement: the newest matching rows are read once, by the list's own index, and
    both counts are taken from them.
    """
    scope = queryset.order_by(*NEWEST.order_by).values("source", "tags")[:FACET_SCOPE]
    sql, params = scope.query.sql_with_params()
    if connection.vendor == "postgresql":
        elements = 'jsonb_array_elements_text(s."tags") AS tag(value)'
    else:
        elements = 'json_each(s."tags") AS tag'
    # Only fixed SQL of ours and the ORM's own compiled query are formatted in; values are parameters.
    query = (
        f"WITH s AS ({sql}) "  # noqa: S608
        "SELECT * FROM (SELECT 'source', s.\"source\", COUNT(*) AS n FROM s WHERE s.\"source\" <> '' "
        "GROUP BY s.\"source\" ORDER BY n DESC, s.\"source\" LIMIT %s) AS sources "
        "UNION ALL "
        f"SELECT * FROM (SELECT 'tag', tag.value, COUNT(*) AS n FROM s, {elements} "
        "GROUP BY tag.value ORDER BY n DESC, tag.value LIMIT %s) AS tags"
    )
    sources: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    with connection.cursor() as cursor:
        cursor.execute(query, [*params, FACET_TOP, FACET_TOP])
        for kind, value, n in cursor.fetchall():
            if kind == "source":
                sources.append({"source": str(value), "count": int(n)})
            else:
                tags.append({"tag": str(value), "count": int(n)})
    return {
        "scope": min(matching.count, FACET_SCOPE),
        "sources": sources,
        "tags": tags,
    }


def neighbours(queryset: QuerySet[Trace], trace: Trace, order: Order) -> tuple[int | None, int | None]:
    """The ids before and after `trace` among `queryset` in `order` (None at either end)."""
    value = getattr(trace, order.field)
    base = queryset.order_by()
    following = after(base, order, value, trace.pk).values_list("pk", flat=True).first()
    preceding = after(base, order.reversed(), value, trace.pk).values_list("pk", flat=True).first()
    return preceding, following
