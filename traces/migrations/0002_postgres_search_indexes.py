"""PostgreSQL-only indexes: full-text search and tag containment (GIN).

Written by hand because they are conditional: SQLite has neither GIN nor
tsvector and uses the fallbacks in TraceQuerySet instead. (0004 replaces the
search index with one on a stored `search_document` column.)
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CREATE = [
    'CREATE INDEX IF NOT EXISTS trace_search_gin ON "traces_trace" USING GIN ('
    "(to_tsvector('english'::regconfig, \"prompt\")"
    " || jsonb_to_tsvector('english'::regconfig, \"steps\", '[\"string\"]'::jsonb)"
    " || to_tsvector('english'::regconfig, \"final_answer\")))",
    'CREATE INDEX IF NOT EXISTS trace_tags_gin ON "traces_trace" USING GIN ("tags" jsonb_path_ops)',
]
DROP = ["DROP INDEX IF EXISTS trace_search_gin", "DROP INDEX IF EXISTS trace_tags_gin"]


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in CREATE:
            schema_editor.execute(sql)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("traces", "0001_initial")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
