"""PostgreSQL fast paths for storing validated traces.

Through the ORM a trace cost ~40 µs of Python (model instances, SQL
building, client-side escaping) and two queries; these paths cost ~10 µs and
one statement. The capture API uses one `INSERT … SELECT FROM unnest(…) … ON
CONFLICT (content_hash) DO NOTHING RETURNING`, the importer COPY. Both keep the
input order, so ids (and "newest first") follow it.

The content hash travels as 32 bytes (`bytea`, migration 0011), never as hex
text. The full-text document is not a column: PostgreSQL computes it from the
row for its GIN expression index as the row is inserted, so every stored
trace is searchable once its transaction commits.

Nothing here imports the models: `traces.models` and `traces.importing` both
use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from traces.validation import CleanTrace

TABLE = "traces_trace"
COLUMNS = (
    "trace_version",
    "prompt",
    "steps",
    "final_answer",
    "meta",
    "source",
    "tags",
    "step_count",
    "char_count",
    "content_hash",
    "created_at",
    "created_by_id",
)
COLUMN_LIST = ", ".join(COLUMNS)

Known = dict[str, tuple[int, dt.datetime, str]]


# An IMMUTABLE wrapper (migration 0011): `json_build_array` is only STABLE, which an index
# expression may not call directly. One `json_to_tsvector` over the three values is ~10-20 %
# cheaper than three `to_tsvector` calls joined with `||`, with the same lexemes.
DOCUMENT_FUNCTION = "traces_trace_document"


def search_document_sql(prompt: str, steps: str, final_answer: str) -> str:
    """The English full-text document of a trace from its three text columns (SQL expressions).

    Exactly the expression of the GIN index `trace_search_gin`: a search must use it as is.
    """
    return f"{DOCUMENT_FUNCTION}({prompt}, {steps}, {final_answer})"


def copy_row(clean: CleanTrace, now: dt.datetime, created_by_id: int | None) -> tuple[Any, ...]:
    """One COPY row in COLUMNS order (JSON columns as text)."""
    dumps = orjson.dumps
    return (
        clean.trace_version,
        clean.prompt,
        dumps(clean.steps).decode(),
        clean.final_answer,
        dumps(clean.meta).decode(),
        clean.source,
        dumps(clean.tags).decode(),
        clean.step_count,
        clean.char_count,
        bytes.fromhex(clean.content_hash),
        now,
        created_by_id,
    )


def _cursor(connection: Any) -> Any:
    """A psycopg cursor with server-side binding on Django's connection.

    Django's cursors bind parameters client-side, escaping array literals with
    a regex per element: for 1,000 traces that costs more than the insert.
    Bound in binary (`%b`), the arrays cost next to nothing. Statements run
    with `prepare=True` are parsed and planned once per pooled connection
    (Django turns psycopg's automatic preparing off). Errors still come out as
    Django's (`IntegrityError`, ...) through `wrap_database_errors`.
    """
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def known_hashes(connection: Any, hashes: Sequence[str]) -> Known:
    """The stored traces among `hashes`: hash -> (id, created_at, trace_version)."""
    if not hashes:
        return {}
    with connection.wrap_database_errors, _cursor(connection) as cur:
        cur.execute(
            f"SELECT content_hash, id, created_at, trace_version FROM {TABLE} "  # noqa: S608 - constant
            "WHERE content_hash = ANY(%b::bytea[])",
            [[bytes.fromhex(h) for h in hashes]],
            binary=True,
            prepare=True,
        )
        return {bytes(h).hex(): (pk, created_at, version) for h, pk, created_at, version in cur.fetchall()}


_INSERT_SQL = (
    f"INSERT INTO {TABLE} ({COLUMN_LIST}) "  # noqa: S608 - constant
    "SELECT v.trace_version, v.prompt, v.steps::json, v.final_answer, v.meta::json, v.source,"
    " v.tags::jsonb, v.step_count, v.char_count, v.content_hash, %b::timestamptz, %b::integer"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::text[], %b::integer[], %b::integer[], %b::bytea[])"
    " WITH ORDINALITY AS v(trace_version, prompt, steps, final_answer, meta, source, tags,"
    " step_count, char_count, content_hash, ord)"
    " ORDER BY v.ord"
    " ON CONFLICT (content_hash) DO NOTHING"
    " RETURNING content_hash, id"
)


def insert_new(
    connection: Any,
    cleans: Sequence[CleanTrace],
    now: dt.datetime,
    created_by_id: int | None,
) -> dict[str, int]:
    """Insert `cleans` (distinct hashes) in order, skipping stored ones; returns hash -> new id.

    One statement whatever the count: all rows or none, and a trace stored
    concurrently is skipped (ON CONFLICT waits for the other transaction).
    """
    dumps = orjson.dumps
    params = [
        now,
        created_by_id,
        [c.trace_version for c in cleans],
        [c.prompt for c in cleans],
        [dumps(c.steps).decode() for c in cleans],
        [c.final_answer for c in cleans],
        [dumps(c.meta).decode() for c in cleans],
        [c.source for c in cleans],
        [dumps(c.tags).decode() for c in cleans],
        [c.step_count for c in cleans],
        [c.char_count for c in cleans],
        [bytes.fromhex(c.content_hash) for c in cleans],
    ]
    with connection.wrap_database_errors, _cursor(connection) as cur:
        cur.execute(_INSERT_SQL, params, binary=True, prepare=True)
        return {bytes(h).hex(): pk for h, pk in cur.fetchall()}
