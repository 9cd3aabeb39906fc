"""Bulk import of preference pair files (the `import_preferences` command).

Like trace imports (traces.importing): records are streamed one at a time,
validated with the shared validator (`validate_pair`) and written in batches,
so memory stays flat whatever the file size; bad records are reported as
file, line and reason, and the good ones stored. On PostgreSQL a batch is one
indexed lookup of the stored hashes and one COPY of the rest (the ORM's model
instances and SQL building cost three times what PostgreSQL spends storing them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import IO, Any

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from traces.choices import PairSource
from traces.formats import Format, Record, detect_format, read_records
from traces.importing import DEFAULT_BATCH_SIZE, ImportReport, _cyclic_gc_paused, _opened, describe_error
from traces.models import PreferencePair
from traces.validation import CleanPair, PairInvalid, validate_pair


def _clean_records(name: str, records: Iterable[Record], report: ImportReport) -> Iterator[CleanPair]:
    max_bytes = settings.TRACE_MAX_BYTES
    for record in records:
        report.read += 1
        if record.error is not None:
            report.add_bad(name, record.line, record.error.replace("Trace exceeds", "Pair exceeds"))
            continue
        try:
            clean = validate_pair(record.value)
        except PairInvalid as exc:
            report.add_bad(name, record.line, describe_error(exc))
            continue
        if clean.size > max_bytes:
            report.add_bad(name, record.line, f"Pair is larger than {max_bytes:,} bytes.")
            continue
        yield clean


COPY_COLUMNS = ("prompt", "chosen", "rejected", "source", "note", "meta", "content_hash", "created_at", "created_by_id")


def _copy(batch: list[CleanPair], created_by_id: int | None) -> int:
    """PostgreSQL: look up the stored hashes, COPY the rest, in one transaction."""
    from psycopg.errors import UniqueViolation

    table = PreferencePair._meta.db_table
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                f'SELECT content_hash FROM "{table}" WHERE content_hash = ANY(%s)',  # noqa: S608 - no user text
                [[c.content_hash for c in batch]],
            )
            known = {row[0] for row in cur.fetchall()}
            rows = [c for c in batch if c.content_hash not in known]
            if rows:
                now = timezone.now()
                dumps = orjson.dumps
                with cur.cursor.copy(f'COPY "{table}" ({", ".join(COPY_COLUMNS)}) FROM STDIN') as copy:
                    for c in rows:
                        copy.write_row(
                            (
                                c.prompt,
                                c.chosen,
                                c.rejected,
                                PairSource.IMPORT,
                                c.note,
                                dumps(c.meta).decode(),
                                c.content_hash,
                                now,
                                created_by_id,
                            )
                        )
            return len(rows)
    except (IntegrityError, UniqueViolation):
        # A concurrent writer stored one of these pairs since the lookup: take the portable path.
        return _insert(batch, created_by_id)


def _write(batch: list[CleanPair], created_by_id: int | None) -> int:
    """Store the batch's pairs not stored yet; returns how many were new."""
    if connection.vendor == "postgresql":
        return _copy(batch, created_by_id)
    return _insert(batch, created_by_id)


def _insert(batch: list[CleanPair], created_by_id: int | None) -> int:
    known = set(
        PreferencePair.objects.filter(content_hash__in=[c.content_hash for c in batch]).values_list(
            "content_hash", flat=True
        )
    )
    now = timezone.now()
    rows = [
        PreferencePair.from_clean(c, source=PairSource.IMPORT, created_at=now, created_by=None)
        for c in batch
        if c.content_hash not in known
    ]
    for row in rows:
        row.created_by_id = created_by_id
    # ignore_conflicts: a pair another writer stored since the lookup is a duplicate, not an error.
    with transaction.atomic():
        PreferencePair.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return len(rows)


def import_preference_files(paths: Iterable[str], **kwargs: Any) -> ImportReport:
    """`import_preferences` over file paths."""
    with _opened(paths) as files:
        return import_preferences(files, **kwargs)


def import_preferences(
    files: list[tuple[str, IO[bytes]]],
    *,
    strict: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fmt: Format | None = None,
    progress: Callable[[ImportReport], None] | None = None,
    user: Any = None,
) -> ImportReport:
    """Import preference pairs (`prompt`, `chosen`, `rejected`, optional `note` and `meta`) from open files.

    Bad records are reported (file, line, reason) and the good ones stored;
    pairs already stored or repeated in the files are counted as duplicates.
    With `strict` the files are validated first and any bad record aborts the
    import with nothing stored. New pairs belong to `user` (None: to nobody).
    """
    started = time.perf_counter()
    max_bytes = settings.TRACE_MAX_BYTES
    formats: dict[str, Format] = {}
    for name, stream in files:
        head = stream.read(64)
        stream.seek(0)
        formats[name] = fmt or detect_format(name, head)

    report = ImportReport()
    if strict:
        for name, stream in files:
            for _ in _clean_records(name, read_records(stream, formats[name], max_bytes), report):
                pass
            stream.seek(0)
        if report.bad:
            report.aborted = True
            report.elapsed = time.perf_counter() - started
            return report
        report = ImportReport()

    owner_id = user.pk if user is not None and user.is_authenticated else None
    batch: dict[str, CleanPair] = {}
    stored = 0  # pairs handed to the database (created or found stored)

    def flush() -> None:
        nonlocal stored
        if not batch:
            return
        report.created += _write(list(batch.values()), owner_id)
        stored += len(batch)
        batch.clear()
        if progress is not None:
            report.elapsed = time.perf_counter() - started
            progress(report)

    seen = 0
    # Strict imports are one transaction, so a failure part-way stores nothing.
    with _cyclic_gc_paused(), transaction.atomic() if strict else nullcontext():
        for name, stream in files:
            for clean in _clean_records(name, read_records(stream, formats[name], max_bytes), report):
                seen += 1
                # A pair repeated within the batch is a duplicate; one repeated across batches
                # is found stored by the next batch's lookup.
                batch.setdefault(clean.content_hash, clean)
                if len(batch) >= batch_size:
                    flush()
        flush()
    report.duplicates = seen - report.created
    report.elapsed = time.perf_counter() - started
    return report
