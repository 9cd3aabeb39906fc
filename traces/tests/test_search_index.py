"""The full-text index: ordinary captures are searchable at once, bulk ones after the indexer ran.

On PostgreSQL bulk captures (imports, API batches over INLINE_SEARCH_MAX) store
traces without their search document and ask a worker to index them; every
other filter sees them at once, and the backlog is reported until then. On
SQLite search reads the rows, so nothing ever waits.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from traces import searchindex
from traces.importing import import_trace_files
from traces.models import Trace
from traces.searchindex import INLINE_SEARCH_MAX, Indexing
from traces.tasks import index_search_task
from traces.tests.factories import TraceFactory, trace_document

# Fixtures: the broker pointed at a closed port; an empty queue (no worker runs here, so what a
# bulk capture queues stays queued until the test ends).
from traces.tests.test_dataset_celery import broker_down, empty_queue  # noqa: F401

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the deferred full-text index is PostgreSQL's"
)


def unique_doc(n: int, word: str) -> dict[str, object]:
    return trace_document(n, prompt=f"How many {word} fit in box {n}?")


def write_jsonl(path: Path, docs: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def found(word: str) -> int:
    return Trace.objects.search(word).count()


@postgres_only
def test_a_bulk_import_is_searchable_once_indexed(tmp_path, empty_queue):  # noqa: F811
    count = INLINE_SEARCH_MAX + 20
    path = write_jsonl(tmp_path / "bulk.jsonl", [unique_doc(n, "zebrafish") for n in range(count)])

    report = import_trace_files([str(path)])

    assert report.created == report.deferred == count
    assert report.search is Indexing.QUEUED
    assert Trace.objects.filter(source="factory").count() == count  # every other filter sees them
    assert found("zebrafish") == 0
    assert searchindex.backlog() == count

    assert index_search_task() == count

    assert found("zebrafish") == count
    assert searchindex.backlog() == 0


@postgres_only
def test_a_small_import_is_indexed_before_it_returns(tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", [unique_doc(n, "narwhal") for n in range(5)])

    report = import_trace_files([str(path)])

    assert report.search is Indexing.INDEXED
    assert found("narwhal") == 5
    assert searchindex.backlog() == 0


def test_sqlite_never_waits_for_an_index(tmp_path):
    if connection.vendor == "postgresql":
        pytest.skip("SQLite behaviour")
    count = INLINE_SEARCH_MAX + 5
    path = write_jsonl(tmp_path / "bulk.jsonl", [unique_doc(n, "axolotl") for n in range(count)])

    report = import_trace_files([str(path)])

    assert report.search is Indexing.NONE
    assert found("axolotl") == count
    assert searchindex.backlog() == 0


@postgres_only
def test_an_api_batch_over_the_inline_limit_is_indexed_by_the_worker(api, empty_queue):  # noqa: F811
    small = [unique_doc(n, "pelican") for n in range(INLINE_SEARCH_MAX)]
    large = [unique_doc(1000 + n, "cormorant") for n in range(INLINE_SEARCH_MAX + 1)]

    assert api.post("/api/traces/batch", small, format="json").status_code == 201
    assert api.post("/api/traces/batch", large, format="json").status_code == 201

    assert found("pelican") == INLINE_SEARCH_MAX
    assert found("cormorant") == 0
    index_search_task()
    assert found("cormorant") == INLINE_SEARCH_MAX + 1


@postgres_only
def test_ordinary_inserts_get_their_document_from_the_trigger():
    trace: Trace = TraceFactory.create(prompt="Where do puffins nest?")

    assert Trace.objects.search("puffin").get().pk == trace.pk
    assert searchindex.backlog() == 0


@postgres_only
def test_the_backlog_is_reported_in_health_the_list_api_and_the_list_page(api, page, tmp_path, empty_queue):  # noqa: F811
    count = INLINE_SEARCH_MAX + 1
    import_trace_files([str(write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "walrus") for n in range(count)]))])

    health = api.get("/api/health").json()["checks"]["search_index"]
    assert health["status"] == "indexing"
    assert health["pending"] == count
    listed = api.get("/api/traces", {"q": "walrus"})
    assert listed.json()["results"] == []
    assert listed["Search-Backlog"] == str(count)
    assert "Search-Backlog" not in api.get("/api/traces")  # only searches are affected
    html = page.get("/traces/", {"q": "walrus"}).content.decode()
    assert f"{count} recently imported traces are still being indexed" in html
    assert "Search index" in page.get("/health/cards").content.decode()

    call_command("index_traces", "--jobs", "1", stdout=io.StringIO())

    health = api.get("/api/health").json()["checks"]["search_index"]
    assert (health["status"], health["pending"]) == ("ok", 0)
    listed = api.get("/api/traces", {"q": "walrus"})
    assert len(listed.json()["results"]) == 20
    assert "Search-Backlog" not in listed
    assert "still being indexed" not in page.get("/traces/", {"q": "walrus"}).content.decode()


@postgres_only
def test_index_traces_command_reports_what_it_did(tmp_path, empty_queue):  # noqa: F811
    count = INLINE_SEARCH_MAX + 3
    import_trace_files([str(write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "lemur") for n in range(count)]))])
    out = io.StringIO()

    call_command("index_traces", "--batch-size", "7", "--jobs", "1", stdout=out)

    assert f"{count} traces wait for indexing." in out.getvalue()
    assert f"{count} traces indexed; 0 waiting." in out.getvalue()
    assert found("lemur") == count


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_index_traces_shares_a_backlog_between_parallel_indexers(tmp_path, empty_queue):  # noqa: F811
    count = 3 * (INLINE_SEARCH_MAX + 1)
    import_trace_files([str(write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "quokka") for n in range(count)]))])
    out = io.StringIO()

    call_command("index_traces", "--batch-size", "5", "--jobs", "3", stdout=out)

    assert f"{count} traces indexed; 0 waiting." in out.getvalue()
    assert found("quokka") == count


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--batch-size", "0"], "--batch-size must be at least 1"), (["--jobs", "0"], "--jobs must be between 1 and 16")],
)
def test_index_traces_rejects_bad_options(args, message):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=message):
        call_command("index_traces", *args, stdout=io.StringIO())


@postgres_only
def test_import_with_the_broker_down_says_how_to_index(tmp_path, broker_down):  # noqa: F811
    count = INLINE_SEARCH_MAX + 2
    path = write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "okapi") for n in range(count)])
    out = io.StringIO()

    call_command("import_traces", "--quiet-progress", str(path), stdout=out, stderr=io.StringIO())

    assert f"{count} created" in out.getvalue()
    assert "the broker is unreachable, so run `manage.py index_traces`" in out.getvalue()
    assert found("okapi") == 0
    assert searchindex.index_backlog() == count
    assert found("okapi") == count


@postgres_only
def test_indexing_is_oldest_first_and_bounded_by_limit(tmp_path, empty_queue):  # noqa: F811
    count = INLINE_SEARCH_MAX + 10
    import_trace_files([str(write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "ibis") for n in range(count)]))])
    oldest = list(Trace.objects.order_by("id").values_list("id", flat=True)[:4])

    assert searchindex.index_backlog(limit=4, batch_size=3) == 4

    assert sorted(Trace.objects.search("ibis").values_list("id", flat=True)) == oldest
    assert searchindex.backlog() == count - 4


@postgres_only
def test_the_upload_page_says_when_text_search_will_find_a_large_file(page, empty_queue):  # noqa: F811
    from django.core.files.uploadedfile import SimpleUploadedFile

    body = "".join(json.dumps(unique_doc(n, "gannet")) + "\n" for n in range(INLINE_SEARCH_MAX + 1)).encode()
    small = "".join(json.dumps(unique_doc(500 + n, "gannet")) + "\n" for n in range(3)).encode()

    large_page = page.post("/traces/upload/file/", {"file": SimpleUploadedFile("big.jsonl", body)})
    small_page = page.post("/traces/upload/file/", {"file": SimpleUploadedFile("small.jsonl", small)})

    assert "text search will find them in a few seconds" in large_page.content.decode()
    assert "text search will find them" not in small_page.content.decode()
    assert found("gannet") == 3  # the small file at once, the large one once indexed
    assert searchindex.backlog() == INLINE_SEARCH_MAX + 1


@postgres_only
@pytest.mark.parametrize("strict", [False, True], ids=["batch-transactions", "one-strict-transaction"])
def test_each_import_batch_is_bulk_or_not_by_its_own_size(tmp_path, empty_queue, strict):  # noqa: F811
    path = write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "tapir") for n in range(INLINE_SEARCH_MAX + 60)])

    report = import_trace_files([str(path)], batch_size=INLINE_SEARCH_MAX + 50, strict=strict)

    assert (report.created, report.deferred) == (INLINE_SEARCH_MAX + 60, INLINE_SEARCH_MAX + 50)
    assert report.search is Indexing.QUEUED
    assert found("tapir") == 10  # the last, small batch went through the insert trigger
    searchindex.index_backlog()
    assert found("tapir") == INLINE_SEARCH_MAX + 60


@postgres_only
@pytest.mark.parametrize(("deferred", "jobs"), [(101, 1), (5000, 1), (5001, 2)])
def test_a_large_backlog_is_queued_for_parallel_indexers(monkeypatch, settings, deferred, jobs):
    settings.CELERY_WORKER_CONCURRENCY = 2
    asked: list[int] = []

    def enqueue(jobs: int = 1) -> bool:
        asked.append(jobs)
        return True

    monkeypatch.setattr(searchindex, "enqueue", enqueue)

    assert searchindex.after_capture(deferred, deferred) is Indexing.QUEUED
    assert asked == [jobs]


@postgres_only
def test_backlog_counts_stop_at_their_caps(api, page, tmp_path, monkeypatch, empty_queue):  # noqa: F811
    import_trace_files([str(write_jsonl(tmp_path / "b.jsonl", [unique_doc(n, "dugong") for n in range(150)]))])
    monkeypatch.setattr(searchindex, "SEARCH_BACKLOG_CAP", 50)
    monkeypatch.setattr(searchindex, "HEALTH_BACKLOG_CAP", 120)

    assert api.get("/api/traces", {"q": "dugong"})["Search-Backlog"] == "50+"
    assert "50+ recently imported traces" in page.get("/traces/", {"q": "dugong"}).content.decode()
    health = api.get("/api/health").json()["checks"]["search_index"]
    assert (health["pending"], health["pending_capped"]) == (120, True)
    assert "120+ traces not searchable yet" in page.get("/health/cards").content.decode()
    assert searchindex.backlog() == 150  # the command's count is exact
