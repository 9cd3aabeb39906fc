"""PostgreSQL: the full-text document is written by the search indexer, not on insert.

Computing the English document (~0.1 ms a trace) and adding it to the GIN index
(~0.07 ms) cost PostgreSQL four times the rest of an insert: bulk capture ran
at ~5,000 traces/s whatever the client did. Now:

- `search_document` is a plain column (the generated expression is dropped; the
  stored documents stay as they are, so no rewrite).
- A BEFORE INSERT trigger still writes the document for every insert (the
  single-trace API, small batches, the ORM, the admin), so those traces are
  searchable at once, unless the inserting transaction declared a bulk
  capture with `set_config('tunixrt.search_deferred', 'on', true)` (imports,
  large API batches; `traces.pgwrite.search_documents_deferred`). Those rows keep
  NULL, and the partial index below is the indexer's queue
  (`traces.searchindex`, run by the `traces.index_search` task and
  `manage.py index_traces`).
- One `jsonb_to_tsvector` over [prompt, steps, final_answer] replaces three
  calls joined by `||`: ~20 % cheaper, the same lexemes.

Also dropped: the `varchar_pattern_ops` twin Django adds to every unique
CharField on PostgreSQL (for LIKE); the content hash is only ever compared
whole, which the unique index serves, and the twin cost every insert.

Running backwards re-creates the generated column (a table rewrite).
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

OLD_DOCUMENT = (
    "to_tsvector('english'::regconfig, \"prompt\")"
    " || jsonb_to_tsvector('english'::regconfig, \"steps\", '[\"string\"]'::jsonb)"
    " || to_tsvector('english'::regconfig, \"final_answer\")"
)

DOCUMENT = (
    "jsonb_to_tsvector('english'::regconfig, jsonb_build_array(NEW.prompt, NEW.steps, NEW.final_answer),"
    " '[\"string\"]'::jsonb)"
)

FORWARD = [
    'ALTER TABLE "traces_trace" ALTER COLUMN "search_document" DROP EXPRESSION IF EXISTS',
    "CREATE OR REPLACE FUNCTION traces_trace_search_document() RETURNS trigger LANGUAGE plpgsql AS $$"
    f" BEGIN NEW.search_document := {DOCUMENT}; RETURN NEW; END $$",
    'CREATE TRIGGER traces_trace_search_document BEFORE INSERT ON "traces_trace" FOR EACH ROW'
    " WHEN (NEW.search_document IS NULL"
    " AND coalesce(current_setting('tunixrt.search_deferred', true), '') <> 'on')"
    " EXECUTE FUNCTION traces_trace_search_document()",
    'CREATE INDEX IF NOT EXISTS trace_search_pending_idx ON "traces_trace" ("id") WHERE "search_document" IS NULL',
    # Indexing rewrites each bulk-captured row once: reclaim those old versions soon, not at 20 % of the table.
    'ALTER TABLE "traces_trace" SET (autovacuum_vacuum_scale_factor = 0.05)',
]
BACKWARD = [
    'ALTER TABLE "traces_trace" RESET (autovacuum_vacuum_scale_factor)',
    "DROP INDEX IF EXISTS trace_search_pending_idx",
    'DROP TRIGGER IF EXISTS traces_trace_search_document ON "traces_trace"',
    "DROP FUNCTION IF EXISTS traces_trace_search_document()",
    "DROP INDEX IF EXISTS trace_search_document_gin",
    'ALTER TABLE "traces_trace" DROP COLUMN IF EXISTS "search_document"',
    'ALTER TABLE "traces_trace" ADD COLUMN "search_document" tsvector'
    f" GENERATED ALWAYS AS ({OLD_DOCUMENT}) STORED",
    'ALTER TABLE "traces_trace" ALTER COLUMN "search_document" SET STATISTICS 1000',
    'CREATE INDEX IF NOT EXISTS trace_search_document_gin ON "traces_trace" USING GIN ("search_document")',
]


LIKE_TWINS = (
    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'traces_trace'"
    " AND indexname LIKE 'traces_trace_content_hash_%%_like'"
)


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in FORWARD:
            schema_editor.execute(sql)
        with schema_editor.connection.cursor() as cur:
            cur.execute(LIKE_TWINS)
            names = [row[0] for row in cur.fetchall()]
        for name in names:
            schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def backward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in BACKWARD:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("traces", "0004_postgres_search_document")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
