"""The full-text index and the compact trace row: every capture is searchable once it commits.

On PostgreSQL the GIN index holds the document *expression* (migration 0011):
PostgreSQL computes it as a row is inserted, whichever path inserts it (the
ORM, the API's `INSERT … ON CONFLICT`, the importer's COPY), so nothing waits
for an indexer. On SQLite search reads the rows. The content hash is 32 bytes
of `bytea` on PostgreSQL and 64 hex characters everywhere else (Python, the
API, SQLite).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import connection

from traces.importing import import_trace_files
from traces.models import Trace
from traces.tests.factories import TraceFactory, trace_document
from traces.validation import validate_trace

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's index and storage")

BULK = 250  # more than any batch the old deferred indexing would have indexed inline


def unique_doc(n: int, word: str) -> dict[str, object]:
    return trace_document(n, prompt=f"How many {word} fit in box {n}?")


def write_jsonl(path: Path, docs: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def found(word: str) -> int:
    return Trace.objects.search(word).count()


@pytest.mark.parametrize("strict", [False, True], ids=["batch-transactions", "one-strict-transaction"])
def test_a_bulk_import_is_searchable_when_it_returns(tmp_path, strict):
    path = write_jsonl(tmp_path / "bulk.jsonl", [unique_doc(n, "zebrafish") for n in range(BULK)])

    report = import_trace_files([str(path)], batch_size=100, strict=strict)

    assert report.created == BULK
    assert found("zebrafish") == BULK


def test_a_large_api_batch_is_searchable_at_once(api):
    docs = [unique_doc(n, "cormorant") for n in range(BULK)]

    assert api.post("/api/traces/batch", docs, format="json").status_code == 201

    assert found("cormorant") == BULK
    listed = api.get("/api/traces", {"q": "cormorant"})
    assert len(listed.json()["results"]) == 20
    assert "Search-Backlog" not in listed


def test_ordinary_inserts_are_searchable():
    trace: Trace = TraceFactory.create(prompt="Where do puffins nest?")

    assert Trace.objects.search("puffins").get().pk == trace.pk


def test_the_upload_page_promises_no_wait_for_a_large_file(page):
    from django.core.files.uploadedfile import SimpleUploadedFile

    body = "".join(json.dumps(unique_doc(n, "gannet")) + "\n" for n in range(BULK)).encode()

    response = page.post("/traces/upload/file/", {"file": SimpleUploadedFile("big.jsonl", body)})

    assert "indexed" not in response.content.decode()
    assert found("gannet") == BULK


def test_health_and_the_list_page_have_no_search_backlog(api, page):
    TraceFactory.create(prompt="Count the walrus teeth.")

    assert "search_index" not in api.get("/api/health").json()["checks"]
    html = page.get("/traces/", {"q": "walrus"}).content.decode()
    assert "still being indexed" not in html
    assert "Search index" not in page.get("/health/cards").content.decode()


@postgres_only
def test_searches_use_the_expression_index():
    TraceFactory.create(prompt="Where do lemurs sleep?")
    sql, params = Trace.objects.search("lemur").values("id").query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cur.fetchall())

    assert "trace_search_gin" in plan


@postgres_only
def test_no_search_document_is_stored():
    with connection.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'traces_trace'"
            " AND column_name = 'search_document'"
        )
        assert cur.fetchall() == []


def test_the_content_hash_is_hex_everywhere_but_in_the_postgres_row(api):
    trace: Trace = TraceFactory.create()
    digest = trace.content_hash
    assert len(digest) == 64

    assert Trace.objects.get(pk=trace.pk).content_hash == digest
    assert list(Trace.objects.filter(content_hash__in=[digest, "0" * 64]).values_list("content_hash", flat=True)) == [
        digest
    ]
    assert Trace.objects.filter(content_hash__istartswith=digest[:10].upper()).get().pk == trace.pk
    assert Trace.objects.filter(content_hash__startswith=digest[:7]).get().pk == trace.pk
    assert not Trace.objects.filter(content_hash="not hex").exists()  # no error: nothing matches
    assert not Trace.objects.filter(content_hash__startswith="zz").exists()
    assert api.get(f"/api/traces/{trace.pk}").json()["content_hash"] == digest
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT octet_length(content_hash), pg_typeof(steps)::text FROM traces_trace")
            assert cur.fetchall() == [(32, "json")]


def test_every_capture_path_stores_the_same_hash_and_steps(api, tmp_path):
    doc = unique_doc(1, "okapi")
    created = api.post("/api/traces", doc, format="json").json()
    write_jsonl(tmp_path / "again.jsonl", [doc, unique_doc(2, "okapi")])

    report = import_trace_files([str(tmp_path / "again.jsonl")])

    assert (report.created, report.duplicates) == (1, 1)  # the unique bytea hash catches the API's copy
    first, second = Trace.objects.order_by("id")
    assert first.pk == created["id"]
    assert first.content_hash == validate_trace(doc).content_hash
    assert first.steps == doc["steps"]
    assert first.document()["steps"] == doc["steps"]
    assert second.content_hash != first.content_hash
