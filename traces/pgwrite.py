"""PostgreSQL fast paths for storing validated traces.

Through the ORM a trace cost ~40 µs of Python (model instances, SQL
building, client-side escaping) and two queries; these paths cost ~10 µs and
one statement. The capture API uses one `INSERT … SELECT FROM unnest(…) … ON
CONFLICT (content_hash) DO NOTHING RETURNING`, the importer COPY. Both keep the
input order, so ids (and "newest first") follow it.

The full-text document costs PostgreSQL more than the rest of the row (~0.1 ms
to compute and ~0.07 ms to index a trace, against ~0.03 ms for everything
else): an insert trigger computes it for small writes, bulk writes run in
`search_documents_deferred` and leave it to `index_backlog`, which fills it in
batches afterwards (migration 0005).

Nothing here imports the models: `traces.models` and `traces.importing` both
use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


def search_document_sql(prompt: str, steps: str, final_answer: str) -> str:
    """The English full-text document of a trace from its three text columns (SQL expressions).

    One `jsonb_to_tsvector` over the three values is ~20 % cheaper than three
    calls joined with `||`, with the same lexemes.
    """
    return (
        f"jsonb_to_tsvector('english'::regconfig, jsonb_build_array({prompt}, {steps}, {final_answer}),"
        " '[\"string\"]'::jsonb)"
    )


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
        clean.content_hash,
        now,
        created_by_id,
    )


def cursor(connection: Any) -> Any:
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
    with connection.wrap_database_errors, cursor(connection) as cur:
        cur.execute(
            f"SELECT content_hash, id, created_at, trace_version FROM {TABLE} "  # noqa: S608 - constant
            "WHERE content_hash = ANY(%b::text[])",
            [list(hashes)],
            binary=True,
            prepare=True,
        )
        return {h: (pk, created_at, version) for h, pk, created_at, version in cur.fetchall()}


_INSERT_SQL = (
    f"INSERT INTO {TABLE} ({COLUMN_LIST}) "  # noqa: S608 - constant
    "SELECT v.trace_version, v.prompt, v.steps::jsonb, v.final_answer, v.meta::jsonb, v.source,"
    " v.tags::jsonb, v.step_count, v.char_count, v.content_hash, %b::timestamptz, %b::integer"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
    " %b::text[], %b::integer[], %b::integer[], %b::text[])"
    " WITH ORDINALITY AS v(trace_version, prompt, steps, final_answer, meta, source, tags,"
    " step_count, char_count, content_hash, ord)"
    " ORDER BY v.ord"
    " ON CONFLICT (content_hash) DO NOTHING"
    " RETURNING content_hash, id"
)


@contextmanager
def search_documents_deferred(connection: Any) -> Iterator[None]:
    """Within the block, inserted traces get no full-text document (a bulk capture).

    The insert trigger of migration 0005 skips rows while the transaction-local
    setting `tunixrt.search_deferred` is on; `searchindex.index_backlog` fills
    them in later. The setting is switched off again when the block ends, so
    the rest of the transaction inserts as usual (on an error the transaction,
    or its savepoint, is rolled back with the setting).
    """
    assert connection.in_atomic_block, "search_documents_deferred needs a transaction"
    with connection.wrap_database_errors, cursor(connection) as cur:
        cur.execute("SELECT set_config('tunixrt.search_deferred', 'on', true)")
    yield
    with connection.wrap_database_errors, cursor(connection) as cur:
        cur.execute("SELECT set_config('tunixrt.search_deferred', 'off', true)")


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
        [c.content_hash for c in cleans],
    ]
    with connection.wrap_database_errors, cursor(connection) as cur:
        cur.execute(_INSERT_SQL, params, binary=True, prepare=True)
        return dict(cur.fetchall())


_DOCUMENT = search_document_sql("t.prompt", "t.steps", "t.final_answer")
_INDEX_SQL = (
    f"UPDATE {TABLE} AS t SET search_document = {_DOCUMENT} WHERE t.id IN ("  # noqa: S608 - constants
    f"SELECT id FROM {TABLE} WHERE search_document IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
)


def index_backlog(connection: Any, limit: int) -> int:
    """Write the full-text document of up to `limit` traces that have none yet (oldest first).

    Rows another indexer is working on are skipped, so indexers can run side
    by side. Returns how many were indexed; 0 means nothing was waiting (or all
    of it is being indexed by someone else).
    """
    with connection.wrap_database_errors, cursor(connection) as cur:
        cur.execute(_INDEX_SQL, [limit])
        return int(cur.rowcount)


def backlog_size(connection: Any, cap: int | None) -> int:
    """How many traces wait for their full-text document, counting at most `cap` (None: all)."""
    with connection.wrap_database_errors, cursor(connection) as cur:
        cur.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE search_document IS NULL LIMIT %s) AS s",  # noqa: S608
            [cap],
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0
