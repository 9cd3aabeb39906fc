"""Bulk import of trace files (the `import_traces` command and the upload page).

Files are streamed record by record, validated with the shared validator and
written in large batches: on PostgreSQL through COPY into a temporary table and
one `INSERT … ON CONFLICT (content_hash) DO NOTHING`, elsewhere through the
ORM. Memory stays constant whatever the file size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from traces.formats import Format, Record, detect_format, read_records
from traces.models import Trace
from traces.validation import CleanTrace, TraceInvalid, validate_trace

MAX_REPORTED_BAD_LINES = 1000
DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True, slots=True)
class BadLine:
    file: str
    line: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    """Counts of what an import did, and the first bad lines with their reasons."""

    read: int = 0
    created: int = 0
    duplicates: int = 0
    bad: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    aborted: bool = False
    elapsed: float = 0.0

    def add_bad(self, name: str, line: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.bad_lines.append(BadLine(name, line, reason))

    @property
    def rate(self) -> float:
        return self.read / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "created": self.created,
            "duplicates": self.duplicates,
            "bad": self.bad,
            "bad_lines": [{"file": b.file, "line": b.line, "reason": b.reason} for b in self.bad_lines],
            "aborted": self.aborted,
            "elapsed_seconds": round(self.elapsed, 3),
        }


def describe_error(exc: TraceInvalid) -> str:
    return "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in exc.errors.items())


def _clean_records(
    name: str, records: Iterable[Record], source: str, report: ImportReport
) -> Iterator[CleanTrace]:
    for record in records:
        report.read += 1
        if record.error is not None:
            report.add_bad(name, record.line, record.error)
            continue
        try:
            yield validate_trace(record.value, default_source=source)
        except TraceInvalid as exc:
            report.add_bad(name, record.line, describe_error(exc))


class _OrmWriter:
    """Portable batch writer: look up known hashes, bulk-insert the rest."""

    def write(self, batch: list[CleanTrace]) -> int:
        hashes = [c.content_hash for c in batch]
        known = set(Trace.objects.filter(content_hash__in=hashes).values_list("content_hash", flat=True))
        now = timezone.now()
        rows = [Trace.from_clean(c, created_at=now) for c in batch if c.content_hash not in known]
        Trace.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        return len(rows)


_COPY_COLUMNS = (
    "trace_version, prompt, steps, final_answer, meta, source, tags, "
    "step_count, char_count, content_hash, created_at"
)


class _PostgresCopyWriter:
    """COPY into a session-local staging table, then one idempotent INSERT … SELECT.

    COPY cannot skip conflicting rows itself, hence the staging table; `ord`
    keeps the file order so that ids (and so "newest first") follow it.
    """

    def __init__(self) -> None:
        with connection.cursor() as cur:
            cur.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS trace_import_stage ("
                " ord integer, trace_version varchar(64), prompt text, steps jsonb,"
                " final_answer text, meta jsonb, source varchar(128), tags jsonb,"
                " step_count integer, char_count integer, content_hash varchar(64),"
                " created_at timestamptz)"
            )

    def write(self, batch: list[CleanTrace]) -> int:
        now = timezone.now()
        dumps = orjson.dumps
        with transaction.atomic(), connection.cursor() as cur:
            raw = cur.cursor
            with raw.copy(f"COPY trace_import_stage (ord, {_COPY_COLUMNS}) FROM STDIN") as copy:
                for n, c in enumerate(batch):
                    copy.write_row(
                        (
                            n,
                            c.trace_version,
                            c.prompt,
                            dumps(c.steps).decode(),
                            c.final_answer,
                            dumps(c.meta).decode(),
                            c.source,
                            dumps(c.tags).decode(),
                            c.step_count,
                            c.char_count,
                            c.content_hash,
                            now,
                        )
                    )
            cur.execute(
                f"INSERT INTO traces_trace ({_COPY_COLUMNS}) "  # noqa: S608 - constant columns
                f"SELECT {_COPY_COLUMNS} FROM trace_import_stage ORDER BY ord "
                "ON CONFLICT (content_hash) DO NOTHING"
            )
            created: int = cur.rowcount
            cur.execute("TRUNCATE trace_import_stage")
        return created


def _writer() -> _OrmWriter | _PostgresCopyWriter:
    if connection.vendor == "postgresql":
        return _PostgresCopyWriter()
    return _OrmWriter()


@contextmanager
def _opened(paths: Iterable[str]) -> Iterator[list[tuple[str, IO[bytes]]]]:
    files: list[tuple[str, IO[bytes]]] = []
    try:
        for path in paths:
            files.append((path, open(path, "rb")))  # noqa: SIM115 - closed below
        yield files
    finally:
        for _, f in files:
            f.close()


def import_trace_files(paths: Iterable[str], **kwargs: Any) -> ImportReport:
    """`import_traces` over file paths (see `import_traces` for the options)."""
    with _opened(paths) as files:
        return import_traces(files, **kwargs)


def import_traces(
    files: list[tuple[str, IO[bytes]]],
    *,
    source: str = "",
    strict: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fmt: Format | None = None,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import trace documents from open binary files.

    Bad records are reported (file, line, reason) and the good ones stored;
    exact duplicates (already stored, or repeated in the files) are skipped and
    counted. With `strict`, the files are validated first and any bad record
    aborts the import with nothing stored.
    """
    started = time.perf_counter()
    max_bytes = settings.TRACE_MAX_BYTES
    formats = {}
    for name, stream in files:
        head = stream.read(64)
        stream.seek(0)
        formats[name] = fmt or detect_format(name, head)

    report = ImportReport()
    if strict:
        for name, stream in files:
            for _ in _clean_records(name, read_records(stream, formats[name], max_bytes), source, report):
                pass
            stream.seek(0)
        if report.bad:
            report.aborted = True
            report.elapsed = time.perf_counter() - started
            return report
        report = ImportReport()

    writer = _writer()
    seen_in_batch: dict[str, CleanTrace] = {}

    def flush() -> None:
        if not seen_in_batch:
            return
        batch = list(seen_in_batch.values())
        seen_in_batch.clear()
        created = writer.write(batch)
        report.created += created
        report.duplicates += len(batch) - created
        if progress is not None:
            report.elapsed = time.perf_counter() - started
            progress(report)

    # Strict imports are one transaction, so a failure part-way stores nothing.
    with transaction.atomic() if strict else nullcontext():
        for name, stream in files:
            for clean in _clean_records(
                name, read_records(stream, formats[name], max_bytes), source, report
            ):
                if clean.content_hash in seen_in_batch:
                    report.duplicates += 1
                    continue
                seen_in_batch[clean.content_hash] = clean
                if len(seen_in_batch) >= batch_size:
                    flush()
        flush()
    report.elapsed = time.perf_counter() - started
    return report
