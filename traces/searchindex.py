"""The full-text search index of traces on PostgreSQL: inline for small captures, a worker for bulk ones.

Computing and indexing a trace's English document costs PostgreSQL ~0.2 ms,
four times the rest of the insert. An insert trigger (migration 0005) writes
it for ordinary inserts (the single-trace API, batches of up to
`INLINE_SEARCH_MAX`, the ORM), which are searchable at once. Bulk captures
(imports, larger API batches) declare themselves (`pgwrite.search_documents_deferred`),
store the traces without it and then ask for indexing: a worker
(`traces.index_search`, also run by beat every 30 s as a safety net) fills the
documents in batches, oldest first, ~3,000-5,000 traces/s on one core. Until
then those traces are found by every filter except the text search, and the
backlog shows on the dashboard, in `/api/health`, in the list API's
`Search-Backlog` header and on the trace list while searching.

SQLite has no full-text index (its search reads the rows): nothing waits there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from django.conf import settings
from django.db import connection, transaction

from traces import pgwrite
from tunixrt.jobs import send

logger = logging.getLogger(__name__)

INLINE_SEARCH_MAX = 100  # captures up to this many new traces are indexed in the same statement
INDEX_BATCH = 1000  # traces per indexing transaction (~0.2 s)
INDEX_JOBS = 2  # indexers side by side for a large backlog (each is one PostgreSQL backend: ~1 core)
# Counting the backlog reads one index entry (and, before a VACUUM, one heap row) per
# waiting trace, so counts stop at a cap: exact for the command, bounded where a page
# or a health check asks (~1 ms per 1,000 counted).
SEARCH_BACKLOG_CAP = 10_000  # the list page and API, on every search while traces wait
HEALTH_BACKLOG_CAP = 100_000  # the dashboard card and /api/health


class Indexing(StrEnum):
    NONE = "none"  # nothing to index (no new traces, or SQLite)
    INDEXED = "indexed"  # searchable at once (a small capture: the insert trigger did it)
    QUEUED = "queued"  # a worker was asked
    WAITING = "waiting"  # the broker was unreachable: beat or `manage.py index_traces` will do it

    def describe(self, count: int) -> str:
        """What happens to the search index for `count` new traces, for people."""
        if self is Indexing.INDEXED:
            return f"Search: the {count:,} new traces are searchable."
        if self is Indexing.QUEUED:
            return f"Search: {count:,} new traces queued for indexing by a worker (~5,000/s)."
        if self is Indexing.WAITING:
            return (
                f"Search: {count:,} new traces wait for indexing; the broker is unreachable, "
                "so run `manage.py index_traces` (or a worker will when it is back)."
            )
        return ""


def enabled() -> bool:
    return connection.vendor == "postgresql"


def backlog(cap: int | None = None) -> int:
    """How many traces are not searchable yet, counting at most `cap` (0 on SQLite)."""
    if not enabled():
        return 0
    return pgwrite.backlog_size(connection, cap)


def describe_backlog(count: int, cap: int) -> str:
    """`count` as people read it: "1,234", or "10,000+" when counting stopped at `cap`."""
    return f"{cap:,}+" if count >= cap else f"{count:,}"


def index_backlog(
    *, batch_size: int = INDEX_BATCH, limit: int | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Index waiting traces, oldest first, one committed batch at a time; returns how many.

    Stops when nothing is left (or after `limit`). Safe to run beside other
    indexers and beside captures: each takes rows nobody else holds.
    """
    if not enabled():
        return 0
    done = 0
    while limit is None or done < limit:
        size = batch_size if limit is None else min(batch_size, limit - done)
        indexed = pgwrite.index_backlog(connection, size)  # one statement: atomic by itself
        if indexed == 0:
            break
        done += indexed
        if progress is not None:
            progress(done)
    return done


def is_bulk(count: int) -> bool:
    """Whether a write of `count` new traces should leave their search documents to the indexer."""
    return count > INLINE_SEARCH_MAX and enabled()


@contextmanager
def bulk_write(count: int) -> Iterator[bool]:
    """Around a write of `count` new traces (inside its transaction); yields whether it is bulk.

    A bulk write stores the rows without search documents (`pgwrite.search_documents_deferred`),
    and the caller asks for indexing once it commits (`after_capture`); a small one leaves them
    to the insert trigger.
    """
    if is_bulk(count):
        with pgwrite.search_documents_deferred(connection):
            yield True
    else:
        yield False


def after_capture(created: int, deferred: int) -> Indexing:
    """Once a capture of `created` new traces committed, `deferred` of them without documents: queue those.

    A large backlog gets `INDEX_JOBS` tasks (at most one per worker slot), which
    share it through SKIP LOCKED: about twice as fast on 2 idle cores.
    """
    if deferred:
        jobs = min(INDEX_JOBS, settings.CELERY_WORKER_CONCURRENCY) if deferred > 5 * INDEX_BATCH else 1
        return Indexing.QUEUED if enqueue(jobs) else Indexing.WAITING
    return Indexing.INDEXED if created and enabled() else Indexing.NONE


def enqueue(jobs: int = 1) -> bool:
    """Ask workers to index the backlog (`jobs` tasks); False (logged) when the broker cannot be reached."""
    started = time.perf_counter()
    try:
        for _ in range(jobs):
            send("traces.index_search")
    except Exception as exc:  # noqa: BLE001 - any broker failure means the same: beat or the command will index
        logger.warning("could not queue search indexing (%.1f s): %s", time.perf_counter() - started, exc)
        return False
    return True


def after_capture_on_commit(created: int, deferred: int) -> None:
    """`after_capture` once the current transaction commits (at once outside one)."""
    if deferred:
        transaction.on_commit(lambda: after_capture(created, deferred))
