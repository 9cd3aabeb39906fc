"""The trace API's reads in one statement: a trace with its scores, reviews and labels; a page of the list.

Through DRF's generic path a trace cost four queries (the row with its rating
and labels, then scores, reviews and labels prefetched) whose SQL Django built
anew on every request, and a nested ModelSerializer walk: ~70 % of the
request. Here the trace and everything attached to it come from one SQL
statement (prepared once per pooled connection on PostgreSQL), and the answer
is built as plain dicts in the exact shape and formats `TraceDetailSerializer`
documents (that serializer stays the schema, the browsable API's form and the
compare endpoint's; a test holds the two answers equal on both databases).

List items carry what the trace list shows (`LIST_DEFAULT`); `?fields=` picks
others, up to the whole trace, and each item links to its detail (`url`).
"""

from __future__ import annotations

import datetime as dt
from collections import namedtuple
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from traces import pgwrite
from traces.models import Trace, TraceLabel, TraceReview, TraceScore

# What a list item can carry (`?fields=`); the detail answer carries all of them and more.
LIST_FIELDS = (
    "id",
    "url",
    "created_at",
    "trace_version",
    "prompt",
    "final_answer",
    "source",
    "tags",
    "step_count",
    "char_count",
    "content_hash",
    "rating",
    "labels",
    "steps",
    "meta",
)
# What the trace list page shows of each trace, and the link to the rest (TraceListSerializer documents it).
LIST_DEFAULT = ("id", "url", "created_at", "prompt", "final_answer", "source", "tags", "step_count", "rating", "labels")
# Columns of the trace row (the rest are computed: url, rating, labels).
_COLUMNS = frozenset(LIST_FIELDS) - {"url", "rating", "labels"}
_JSON_COLUMNS = frozenset({"tags", "steps", "meta"})
_DETAIL_COLUMNS = tuple(f for f in LIST_FIELDS if f in _COLUMNS)  # the row's columns, in the answer's order


def datetime_text(value: dt.datetime | str | None, zone: dt.tzinfo | None = None) -> str | None:
    """A datetime as DRF's DateTimeField writes it (ISO 8601 in the current time zone, UTC as `Z`).

    A string (a timestamp inside JSON from PostgreSQL) is parsed first. Written out here: DRF's
    field costs ~25 µs a value, a list page has 50. `zone`: the current time zone, when the caller has it.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None and value.utcoffset() is not None:  # aware
        zone = zone or timezone.get_current_timezone()
        if value.tzinfo is not zone:  # psycopg hands PostgreSQL's timestamps over in UTC (`output_zone`)
            value = value.astimezone(zone)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def detail_path_prefix() -> str:
    """The path of a trace's `GET /api/traces/{id}` before the id, under the app's script prefix
    (a deployment mounted below `/`); `reverse` once per prefix, not per request."""
    return _detail_path_prefix(get_script_prefix())


@cache
def _detail_path_prefix(script_prefix: str) -> str:  # script_prefix: the cache key (reverse reads it itself)
    return reverse("api-trace-detail", args=[0])[:-1]


def parse_fields(raw: str | None) -> tuple[str, ...]:
    """`?fields=` of the list: comma-separated names from LIST_FIELDS (default LIST_DEFAULT); 400 naming `fields`."""
    if raw is None or not raw.strip():
        return LIST_DEFAULT
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [name for name in names if name not in LIST_FIELDS]
    if unknown:
        raise ValidationError(
            {"fields": [f"Unknown field {', '.join(unknown)}; choose from {', '.join(LIST_FIELDS)}."]}
        )
    return names


def list_values(fields: Iterable[str]) -> list[str]:
    """What a list page with `fields` reads of each row: `pk` (links and cursors), columns, annotations.

    The keys of every order (created_at, step_count) are always read: the next cursor needs them.
    """
    keys = {"created_at", "step_count"}
    names = ["pk", *sorted(keys | {f for f in fields if f in _COLUMNS and f != "id"})]
    if "rating" in fields:
        names.append("rating")
    if "labels" in fields:
        names.append("label_text")
    return names


def output_zone() -> dt.tzinfo:
    """The current time zone, as `datetime.UTC` when it is UTC: the object PostgreSQL's timestamps
    arrive in, so that `datetime_text` writes them without converting each (~1 µs a value)."""
    zone = timezone.get_current_timezone()
    return dt.UTC if timezone.get_current_timezone_name() == "UTC" else zone


def list_items(rows: Iterable[Any], fields: Sequence[str], detail_prefix: str) -> list[dict[str, Any]]:
    """The items of a list page, with `fields` only, from rows of `list_values` (named tuples)."""
    zone = output_zone()
    return [list_item(row, fields, detail_prefix, zone) for row in rows]


def fetch_rows(queryset: Any, remember: tuple[Any, ...] | None = None) -> list[Any]:
    """A list page's rows (named tuples of `list_values`), read as a prepared statement on PostgreSQL.

    The ORM still builds the SQL (filters, order, cursor); psycopg then runs it with
    server-side binding, planned once per pooled connection for each shape of query, and
    the rows skip Django's per-value converters (JSON columns are decoded here). On
    SQLite the ORM runs it. `remember`: the `first_page_key` of this page, whose SQL
    is kept for the next request of that shape (`remembered_page`).
    """
    if connection.vendor != "postgresql":
        return list(queryset)
    sql, params = queryset.query.sql_with_params()
    if remember is not None:
        if len(_FIRST_PAGES) >= FIRST_PAGES_MAX:
            _FIRST_PAGES.clear()
        _FIRST_PAGES[remember] = (sql, tuple(params))
    return run_rows(sql, params)


def run_rows(sql: str, params: Sequence[Any]) -> list[Any]:
    """Run a list page's SQL (PostgreSQL, prepared) and return its rows as named tuples, JSON decoded."""
    with connection.wrap_database_errors, pgwrite.cursor(connection) as cur:
        cur.execute(sql, params, prepare=True)
        names = tuple(column.name for column in cur.description or ())
        fetched = cur.fetchall()
    make = _row_class(names)._make
    decode = [i for i, name in enumerate(names) if name in _JSON_COLUMNS]
    if not decode:
        return [make(values) for values in fetched]
    rows = []
    for values in fetched:
        items = list(values)
        for i in decode:
            items[i] = _json(items[i])
        rows.append(make(items))
    return rows


def _json(value: Any) -> Any:
    """A JSON column or aggregate as PostgreSQL sent it: Django has psycopg hand those over as text
    (JSONField decodes them), so text is decoded here with orjson; anything else is as it came."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


# The SQL (with its constant parameters) of the unfiltered first pages served so far, by
# `first_page_key`: building and compiling it with the ORM cost ~0.6 ms of every such page,
# and it never changes (no filter, no cursor; the review annotations are constant SQL).
_FIRST_PAGES: dict[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = {}
FIRST_PAGES_MAX = 256


def first_page_key(query_params: Any, fields: tuple[str, ...]) -> tuple[Any, ...] | None:
    """What decides the SQL of a first page (None for a later page, or on SQLite); the caller has
    checked that the request names no filter."""
    if connection.vendor != "postgresql" or "cursor" in query_params:
        return None
    return (connection.alias, fields, query_params.get("limit"), query_params.get("sort"))


def forget_first_pages() -> None:
    """Drop the remembered first-page SQL (tests: a migrated schema, another database)."""
    _FIRST_PAGES.clear()


def remembered_page(key: tuple[Any, ...] | None) -> tuple[str, tuple[Any, ...]] | None:
    """The SQL and parameters `fetch_rows` kept for this `first_page_key`, if any."""
    return _FIRST_PAGES.get(key) if key is not None else None


@cache
def _row_class(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names)


def list_item(row: Any, fields: Sequence[str], detail_prefix: str, zone: dt.tzinfo) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name in fields:
        if name == "id":
            item[name] = row.pk
        elif name == "url":
            item[name] = f"{detail_prefix}{row.pk}"
        elif name == "created_at":
            item[name] = datetime_text(row.created_at, zone)
        elif name == "labels":
            item[name] = Trace.label_list(row.label_text)
        else:
            item[name] = getattr(row, name)
    return item


def detail(pk: int) -> dict[str, Any] | None:
    """The whole trace as `GET /api/traces/{id}` answers it, or None when there is no such trace."""
    if connection.vendor == "postgresql":
        return _detail_postgres(pk)
    return _detail_orm(pk)


def _detail_document(
    row: dict[str, Any],
    rating: str | None,
    scores: list[dict[str, Any]],
    reviews: list[dict[str, Any]],
    labels: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": datetime_text(row["created_at"]),
        "trace_version": row["trace_version"],
        "prompt": row["prompt"],
        "final_answer": row["final_answer"],
        "source": row["source"],
        "tags": row["tags"],
        "step_count": row["step_count"],
        "char_count": row["char_count"],
        "content_hash": row["content_hash"],
        "rating": rating,
        "labels": sorted(label["label"] for label in labels),
        # Steps as StepSerializer writes them: i, type, content, in that order, nothing else.
        "steps": [{"i": s["i"], "type": s["type"], "content": s["content"]} for s in row["steps"]],
        "meta": row["meta"],
        "scores": [
            {
                "criteria": s["criteria"],
                "score": s["score"],
                "details": s["details"],
                "updated_at": datetime_text(s["updated_at"]),
            }
            for s in scores
        ],
        "reviews": [
            {
                "user": r["user"],
                "rating": r["rating"],
                "comment": r["comment"],
                "rated_at": datetime_text(r["rated_at"]),
                "updated_at": datetime_text(r["updated_at"]),
            }
            for r in reviews
        ],
        "label_details": [
            {"label": lab["label"], "created_by": lab["created_by"], "created_at": datetime_text(lab["created_at"])}
            for lab in labels
        ],
    }


@cache
def _detail_sql() -> str:
    """The one statement of a detail read on PostgreSQL (table names from the models)."""
    trace = Trace._meta.db_table
    score = TraceScore._meta.db_table
    review = TraceReview._meta.db_table
    label = TraceLabel._meta.db_table
    user = get_user_model()._meta.db_table
    columns = ", ".join(f"t.{c}" for c in _DETAIL_COLUMNS)
    # Each aggregate is asked for only when a row exists (an index probe): most traces have no
    # scores, reviews or labels, and starting an ordered json_agg cost ~20-50 µs even over none.
    return (
        f"SELECT {columns},"  # noqa: S608 - names from the models' metadata, the id is bound
        f" (SELECT r.rating FROM {review} r WHERE r.trace_id = t.id AND r.rated_at IS NOT NULL"
        "  ORDER BY r.rated_at DESC, r.id DESC LIMIT 1),"
        f" CASE WHEN EXISTS (SELECT FROM {score} s WHERE s.trace_id = t.id) THEN"
        " (SELECT json_agg(json_build_object('criteria', s.criteria, 'score', s.score, 'details', s.details,"
        f"  'updated_at', s.updated_at) ORDER BY s.criteria) FROM {score} s WHERE s.trace_id = t.id) END,"
        f" CASE WHEN EXISTS (SELECT FROM {review} r WHERE r.trace_id = t.id) THEN"
        " (SELECT json_agg(json_build_object('user', u.username, 'rating', r.rating, 'comment', r.comment,"
        "  'rated_at', r.rated_at, 'updated_at', r.updated_at) ORDER BY r.updated_at DESC, r.id DESC)"
        f"  FROM {review} r LEFT JOIN {user} u ON u.id = r.user_id WHERE r.trace_id = t.id) END,"
        f" CASE WHEN EXISTS (SELECT FROM {label} l WHERE l.trace_id = t.id) THEN"
        " (SELECT json_agg(json_build_object('label', l.label, 'created_by', u.username,"
        f"  'created_at', l.created_at) ORDER BY l.label) FROM {label} l LEFT JOIN {user} u"
        "  ON u.id = l.created_by_id WHERE l.trace_id = t.id) END"
        f" FROM {trace} t WHERE t.id = %b"
    )


def _detail_postgres(pk: int) -> dict[str, Any] | None:
    # psycopg's own cursor (pgwrite.cursor): server-side binding, prepared once per pooled connection.
    with connection.wrap_database_errors, pgwrite.cursor(connection) as cur:
        cur.execute(_detail_sql(), [pk], prepare=True)
        row = cur.fetchone()
    if row is None:
        return None
    n = len(_DETAIL_COLUMNS)
    values = dict(zip(_DETAIL_COLUMNS, row[:n], strict=True))
    for name in _JSON_COLUMNS:
        values[name] = _json(values[name])
    scores, reviews, labels = (_json(v) or [] for v in row[n + 1 :])
    return _detail_document(values, row[n], scores, reviews, labels)


def _detail_orm(pk: int) -> dict[str, Any] | None:
    trace = Trace.objects.with_review().filter(pk=pk).first()
    if trace is None:
        return None
    values = {c: getattr(trace, c) for c in _DETAIL_COLUMNS}
    scores = [
        {"criteria": s.criteria, "score": s.score, "details": s.details, "updated_at": s.updated_at}
        for s in trace.scores.order_by("criteria")
    ]
    reviews = [
        {"user": r.user.username if r.user else None, "rating": r.rating, "comment": r.comment,
         "rated_at": r.rated_at, "updated_at": r.updated_at}
        for r in trace.reviews.select_related("user").order_by("-updated_at", "-id")
    ]
    labels = [
        {"label": lab.label, "created_by": lab.created_by.username if lab.created_by else None,
         "created_at": lab.created_at}
        for lab in trace.labels.select_related("created_by").order_by("label")
    ]
    rating: str | None = trace.rating  # type: ignore[attr-defined]
    return _detail_document(values, rating, scores, reviews, labels)

