"""PostgreSQL: a trace takes ~1.5 KB with its indexes instead of ~3 KB (the search document is not stored).

Until now the English full-text document was a stored `tsvector` column
(~1.1 KB a trace, more than the trace itself), and bulk captures had it filled
in afterwards by an indexer whose UPDATE wrote every such row a second time
(a dead row version per trace, and new entries in every index). Now:

- The GIN index `trace_search_gin` indexes the document *expression*,
  `traces_trace_document(prompt, steps, final_answer)`: PostgreSQL computes it
  as a row is inserted, keeps only the index entries, and every committed
  trace is searchable at once. The function is an IMMUTABLE wrapper around one
  `json_to_tsvector('english', json_build_array(...))` (the build functions are
  only STABLE, which an index expression may not call); the same lexemes as
  before. A search must call it exactly so (`traces.pgwrite.search_document_sql`).
  Its declared cost (3000, ~7 ms in planner units; the default 100 claims ~0.25)
  tells the planner that filtering rows one by one recomputes the document (~0.1-0.4
  ms a row): a word in 0.4 % of 1M traces then takes the GIN index and a top-N sort
  (50-130 ms on a busy host) instead of reading 12,500 rows newest first (5 s),
  while a word in a third of them still reads ~150 rows newest first (20-100 ms).
  Statistics target 1000 on the index column, as the stored column had: the
  planner then knows how rare a rare word is.
- The column, its trigger, the indexer's queue index, and the storage settings
  it needed (`toast_tuple_target`, autovacuum scale factor) go.
- `content_hash` is 32 bytes of `bytea` (decoded from the 64 hex characters;
  `traces.dbfields.Sha256Field` shows it as hex), its unique index half the size.
- `steps` and `meta` are `json` rather than `jsonb`: ~10 % smaller, and nothing
  queries inside them (`traces.dbfields.JSONTextField`; the derived `source` and
  `tags` columns serve the filters).
- The newest-first indexes become ascending (read backwards, as fast): new rows
  then land at the right end of their key range, where PostgreSQL splits a full
  page 90/10, instead of the left end, where it splits 50/50 and leaves the
  index twice the size. The `created_by` index only holds the traces that
  have one (imports have none).

The type changes rewrite the table once (which also drops the dead row
versions the indexer left), under an exclusive lock: ~1-2 min per million
traces. On SQLite nothing changes (same column types, no full-text index; its
indexes keep their direction, which SQLite reads either way).
Backwards restores the stored column (computed in a second rewrite) and the
deferred-indexing trigger of 0005, with every document filled.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import traces.dbfields

DOCUMENT_FUNCTION = (
    "CREATE OR REPLACE FUNCTION traces_trace_document(prompt text, steps json, final_answer text)"
    " RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE COST 3000 AS"
    " $$ SELECT json_to_tsvector('english'::regconfig, json_build_array(prompt, steps, final_answer),"
    " '[\"string\"]'::jsonb) $$"
)

# The index Django made for the foreign key in 0001 (its name is a hash of table and column).
CREATED_BY_INDEX = "traces_trace_created_by_id_dd9176ac"

FORWARD = [
    'DROP TRIGGER IF EXISTS traces_trace_search_document ON "traces_trace"',
    "DROP FUNCTION IF EXISTS traces_trace_search_document()",
    "DROP INDEX IF EXISTS trace_search_pending_idx",
    "DROP INDEX IF EXISTS trace_search_document_gin",
    'ALTER TABLE "traces_trace" DROP COLUMN IF EXISTS "search_document"',
    'ALTER TABLE "traces_trace" RESET (toast_tuple_target, autovacuum_vacuum_scale_factor)',
    'ALTER TABLE "traces_trace"'
    ' ALTER COLUMN "content_hash" TYPE bytea USING decode("content_hash", \'hex\'),'
    ' ALTER COLUMN "steps" TYPE json USING "steps"::json,'
    ' ALTER COLUMN "meta" TYPE json USING "meta"::json',
    DOCUMENT_FUNCTION,
    'CREATE INDEX IF NOT EXISTS trace_search_gin ON "traces_trace" USING GIN'
    ' (traces_trace_document("prompt", "steps", "final_answer"))',
    "ALTER INDEX trace_search_gin ALTER COLUMN 1 SET STATISTICS 1000",
    "DROP INDEX IF EXISTS trace_newest_idx",
    'CREATE INDEX trace_newest_idx ON "traces_trace" ("created_at", "id")',
    "DROP INDEX IF EXISTS trace_source_newest_idx",
    'CREATE INDEX trace_source_newest_idx ON "traces_trace" ("source", "created_at", "id")',
    f"DROP INDEX IF EXISTS {CREATED_BY_INDEX}",
    'CREATE INDEX trace_created_by_idx ON "traces_trace" ("created_by_id") WHERE "created_by_id" IS NOT NULL',
    'ANALYZE "traces_trace"',
]

# 0004's three-call document: IMMUTABLE, so it can fill the restored column in the rewrite.
OLD_DOCUMENT = (
    "to_tsvector('english'::regconfig, \"prompt\")"
    " || jsonb_to_tsvector('english'::regconfig, \"steps\", '[\"string\"]'::jsonb)"
    " || to_tsvector('english'::regconfig, \"final_answer\")"
)
TRIGGER_DOCUMENT = (
    "jsonb_to_tsvector('english'::regconfig, jsonb_build_array(NEW.prompt, NEW.steps, NEW.final_answer),"
    " '[\"string\"]'::jsonb)"
)

BACKWARD = [
    "DROP INDEX IF EXISTS trace_created_by_idx",
    f'CREATE INDEX IF NOT EXISTS {CREATED_BY_INDEX} ON "traces_trace" ("created_by_id")',
    "DROP INDEX IF EXISTS trace_source_newest_idx",
    'CREATE INDEX trace_source_newest_idx ON "traces_trace" ("source", "created_at" DESC, "id" DESC)',
    "DROP INDEX IF EXISTS trace_newest_idx",
    'CREATE INDEX trace_newest_idx ON "traces_trace" ("created_at" DESC, "id" DESC)',
    "DROP INDEX IF EXISTS trace_search_gin",
    "DROP FUNCTION IF EXISTS traces_trace_document(text, json, text)",
    'ALTER TABLE "traces_trace"'
    ' ALTER COLUMN "content_hash" TYPE varchar(64) USING encode("content_hash", \'hex\'),'
    ' ALTER COLUMN "steps" TYPE jsonb USING "steps"::jsonb,'
    ' ALTER COLUMN "meta" TYPE jsonb USING "meta"::jsonb',
    f'ALTER TABLE "traces_trace" ADD COLUMN "search_document" tsvector GENERATED ALWAYS AS ({OLD_DOCUMENT}) STORED',
    'ALTER TABLE "traces_trace" ALTER COLUMN "search_document" DROP EXPRESSION',
    'ALTER TABLE "traces_trace" ALTER COLUMN "search_document" SET STATISTICS 1000',
    'ALTER TABLE "traces_trace" SET (toast_tuple_target = 4080, autovacuum_vacuum_scale_factor = 0.05)',
    "CREATE OR REPLACE FUNCTION traces_trace_search_document() RETURNS trigger LANGUAGE plpgsql AS $$"
    f" BEGIN NEW.search_document := {TRIGGER_DOCUMENT}; RETURN NEW; END $$",
    'CREATE TRIGGER traces_trace_search_document BEFORE INSERT ON "traces_trace" FOR EACH ROW'
    " WHEN (NEW.search_document IS NULL"
    " AND coalesce(current_setting('tunixrt.search_deferred', true), '') <> 'on')"
    " EXECUTE FUNCTION traces_trace_search_document()",
    'CREATE INDEX IF NOT EXISTS trace_search_pending_idx ON "traces_trace" ("id") WHERE "search_document" IS NULL',
    'CREATE INDEX IF NOT EXISTS trace_search_document_gin ON "traces_trace" USING GIN ("search_document")',
    'ANALYZE "traces_trace"',
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
    dependencies = [
        ("traces", "0010_preference_pairs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
            state_operations=[
                migrations.AlterField(
                    model_name="trace",
                    name="content_hash",
                    field=traces.dbfields.Sha256Field(unique=True),
                ),
                migrations.AlterField(
                    model_name="trace",
                    name="steps",
                    field=traces.dbfields.JSONTextField(),
                ),
                migrations.AlterField(
                    model_name="trace",
                    name="meta",
                    field=traces.dbfields.JSONTextField(blank=True, default=dict),
                ),
                migrations.RemoveIndex(model_name="trace", name="trace_newest_idx"),
                migrations.RemoveIndex(model_name="trace", name="trace_source_newest_idx"),
                migrations.AlterField(
                    model_name="trace",
                    name="created_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AddIndex(
                    model_name="trace",
                    index=models.Index(fields=["created_at", "id"], name="trace_newest_idx"),
                ),
                migrations.AddIndex(
                    model_name="trace",
                    index=models.Index(fields=["source", "created_at", "id"], name="trace_source_newest_idx"),
                ),
                migrations.AddIndex(
                    model_name="trace",
                    index=models.Index(
                        condition=models.Q(("created_by__isnull", False)),
                        fields=["created_by"],
                        name="trace_created_by_idx",
                    ),
                ),
            ],
        ),
    ]
