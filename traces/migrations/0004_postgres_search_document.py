"""PostgreSQL: the full-text document becomes a stored generated column.

0002 indexed the expression itself. PostgreSQL then has to recompute it (three
to_tsvector calls, ~0.1 ms a trace) for every row it filters or rechecks, and a
search for a word in a few percent of 1M traces took 0.3-2 s (a rare word up
to a minute when the planner misjudged it). Stored, the same document is
computed once at insert, exactly as the index computed it, and a check costs
microseconds. Same words, same stemming, same positions: results are unchanged.

- `search_document` is maintained by PostgreSQL itself on every INSERT/UPDATE;
  the Django model does not declare it (SQLite has no tsvector).
- `toast_tuple_target = 4080`: rows now pass the default 2 KB TOAST threshold,
  and compressing the document on every insert cost ~10 % more CPU than the
  whole rest of the row; rows stay uncompressed up to 4 KB instead.
- Statistics target 1000 on the column: with the default (100) every word
  outside the ~1,000 most common is guessed at 0.5 % of rows, which sends
  searches for rare words down the newest-first index.

Adding a stored column rewrites the table (a lock for the duration: ~1 min per
million traces on 2 cores).
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

DOCUMENT = (
    "to_tsvector('english'::regconfig, \"prompt\")"
    " || jsonb_to_tsvector('english'::regconfig, \"steps\", '[\"string\"]'::jsonb)"
    " || to_tsvector('english'::regconfig, \"final_answer\")"
)

FORWARD = [
    'ALTER TABLE "traces_trace" ADD COLUMN IF NOT EXISTS "search_document" tsvector'
    f" GENERATED ALWAYS AS ({DOCUMENT}) STORED",
    'ALTER TABLE "traces_trace" ALTER COLUMN "search_document" SET STATISTICS 1000',
    'ALTER TABLE "traces_trace" SET (toast_tuple_target = 4080)',
    'CREATE INDEX IF NOT EXISTS trace_search_document_gin ON "traces_trace" USING GIN ("search_document")',
    "DROP INDEX IF EXISTS trace_search_gin",
    'ANALYZE "traces_trace"',
]
BACKWARD = [
    f'CREATE INDEX IF NOT EXISTS trace_search_gin ON "traces_trace" USING GIN (({DOCUMENT}))',
    "DROP INDEX IF EXISTS trace_search_document_gin",
    'ALTER TABLE "traces_trace" DROP COLUMN IF EXISTS "search_document"',
    'ALTER TABLE "traces_trace" RESET (toast_tuple_target)',
]


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in FORWARD:
            schema_editor.execute(sql)


def backward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in BACKWARD:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("traces", "0003_datasets")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
