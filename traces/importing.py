"""Bulk import of trace files (the `import_traces` command and the upload page).

Files are streamed record by record, validated with the shared validator and
written in large batches: on PostgreSQL with COPY straight into the table
(stored hashes looked up first), overlapped with parsing the next batch;
elsewhere through the ORM. Memory stays constant whatever the file size.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from traces import pgwrite, searchindex
from traces.formats import Format, Record, detect_format, read_records
from traces.models import Trace
from traces.validation import CleanTrace, TraceInvalid, validate_trace

logger = logging.getLogger(__name__)

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
    deferred: int = 0  # created without a search document (bulk batches), for the indexer
    search: searchindex.Indexing = searchindex.Indexing.NONE

    def add_bad(self, name: str, line: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.bad_lines.append(BadLine(name, line, reason))

    @property
    def rate(self) -> float:
        return self.read / self.elapsed if self.elapsed > 0 else 0.0

    def error_lines(self) -> list[str]:
        """The bad lines as `FILE:LINE: reason`, and how many more there were."""
        lines = [f"{bad.file}:{bad.line}: {bad.reason}" for bad in self.bad_lines]
        if self.bad > len(self.bad_lines):
            lines.append(f"... and {self.bad - len(self.bad_lines):,} more bad lines")
        return lines

    def summary(self, unit: str) -> str:
        return (
            f"{self.read:,} read, {self.created:,} created, {self.duplicates:,} duplicates, "
            f"{self.bad:,} bad in {self.elapsed:.2f}s ({self.rate:,.0f} {unit}/s)"
        )


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

    def __init__(self, created_by_id: int | None = None) -> None:
        self.created_by_id = created_by_id
        self.done = 0  # traces of the batches written so far
        self.created = 0
        self.deferred = 0  # created without a search document (none here: SQLite has no index)

    def __enter__(self) -> _OrmWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def write(self, batch: list[CleanTrace]) -> None:
        hashes = [c.content_hash for c in batch]
        known = set(Trace.objects.filter(content_hash__in=hashes).values_list("content_hash", flat=True))
        now = timezone.now()
        rows = [Trace.from_clean(c, created_at=now) for c in batch if c.content_hash not in known]
        for row in rows:
            row.created_by_id = self.created_by_id
        Trace.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        self.done += len(batch)
        self.created += len(rows)

    def finish(self) -> None:
        pass


class _PostgresCopyWriter:
    """COPY straight into the table, overlapped with reading the next batch.

    Per batch: one indexed lookup drops the hashes already stored, and COPY
    writes the rest in file order (so ids, and "newest first", follow it). The
    COPY data goes to psycopg's writer thread and the statement is waited for
    only when the next batch is ready (or at the end): PostgreSQL stores and
    indexes one batch while this process parses the next. Each batch is its own
    transaction (a savepoint under --strict). Should a concurrent writer store
    one of the hashes in between (a unique violation), the batch is rolled back
    and redone with `INSERT … ON CONFLICT DO NOTHING`.
    """

    def __init__(self, created_by_id: int | None = None) -> None:
        self.created_by_id = created_by_id
        self.done = 0
        self.created = 0
        self.deferred = 0  # created without a search document, for the indexer
        self._pending: tuple[ExitStack, list[CleanTrace], int, bool] | None = None

    def __enter__(self) -> _PostgresCopyWriter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None and self._pending is not None:
            # Reading failed after a batch was handed over: store that batch as
            # the batch-at-a-time writer would have, unless it failed itself.
            try:
                self.finish()
            except Exception:  # the original exception matters more
                logger.exception("Could not store the last batch of an interrupted import")

    def write(self, batch: list[CleanTrace]) -> None:
        from psycopg.copy import QueuedLibpqWriter

        self.finish()
        stack = ExitStack()
        try:
            stack.enter_context(transaction.atomic())
            cur = stack.enter_context(connection.cursor())
            known = pgwrite.known_hashes(connection, [c.content_hash for c in batch])
            rows = [c for c in batch if c.content_hash not in known]
            # Bulk: indexed after the import (traces.searchindex); the setting ends after the COPY.
            defer = stack.enter_context(searchindex.bulk_write(len(rows)))
            if rows:
                raw = cur.cursor
                copy = stack.enter_context(
                    raw.copy(
                        f"COPY {pgwrite.TABLE} ({pgwrite.COLUMN_LIST}) FROM STDIN",
                        writer=QueuedLibpqWriter(raw),
                    )
                )
                now = timezone.now()
                for clean in rows:
                    copy.write_row(pgwrite.copy_row(clean, now, self.created_by_id))
        except BaseException:
            stack.__exit__(*sys.exc_info())
            raise
        self._pending = (stack, batch, len(rows), defer)

    def finish(self) -> None:
        """Wait for the batch in flight, if any, and commit it."""
        if self._pending is None:
            return
        stack, batch, count, defer = self._pending
        self._pending = None
        from psycopg.errors import UniqueViolation

        try:
            stack.close()
        except (IntegrityError, UniqueViolation):
            count, defer = self._insert_skipping_stored(batch)
        self.done += len(batch)
        self.created += count
        if defer:
            self.deferred += count

    def _insert_skipping_stored(self, batch: list[CleanTrace]) -> tuple[int, bool]:
        with transaction.atomic(), searchindex.bulk_write(len(batch)) as defer:
            return len(pgwrite.insert_new(connection, batch, timezone.now(), self.created_by_id)), defer


def _writer(created_by_id: int | None) -> _OrmWriter | _PostgresCopyWriter:
    if connection.vendor == "postgresql":
        return _PostgresCopyWriter(created_by_id)
    return _OrmWriter(created_by_id)


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


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while records stream through.

    Parsing allocates millions of short-lived, acyclic objects that reference
    counting frees at once; the cyclic collector would still walk them again
    and again (~15 % of an import's CPU). Memory stays flat either way.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    user: Any = None,
) -> ImportReport:
    """Import trace documents from open binary files.

    Bad records are reported (file, line, reason) and the good ones stored;
    exact duplicates (already stored, or repeated in the files) are skipped and
    counted. With `strict`, the files are validated first and any bad record
    aborts the import with nothing stored. The new traces belong to `user`
    (None: to nobody, so only maintainers may delete them).
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

    seen_in_batch: dict[str, CleanTrace] = {}
    repeated = 0  # duplicates within a batch, never sent to the database

    def tally(writer: _OrmWriter | _PostgresCopyWriter) -> None:
        report.created = writer.created
        report.duplicates = repeated + writer.done - writer.created

    def flush(writer: _OrmWriter | _PostgresCopyWriter) -> None:
        if not seen_in_batch:
            return
        batch = list(seen_in_batch.values())
        seen_in_batch.clear()
        writer.write(batch)
        tally(writer)
        if progress is not None:
            report.elapsed = time.perf_counter() - started
            progress(report)

    owner_id = user.pk if user is not None and user.is_authenticated else None
    # Strict imports are one transaction, so a failure part-way stores nothing.
    with _cyclic_gc_paused(), transaction.atomic() if strict else nullcontext(), _writer(owner_id) as writer:
        for name, stream in files:
            for clean in _clean_records(
                name, read_records(stream, formats[name], max_bytes), source, report
            ):
                if clean.content_hash in seen_in_batch:
                    repeated += 1
                    continue
                seen_in_batch[clean.content_hash] = clean
                if len(seen_in_batch) >= batch_size:
                    flush(writer)
        flush(writer)
        writer.finish()
        tally(writer)
    report.elapsed = time.perf_counter() - started
    # Committed: bulk batches were stored without search documents; a worker adds them.
    report.deferred = writer.deferred
    report.search = searchindex.after_capture(report.created, report.deferred)
    return report
