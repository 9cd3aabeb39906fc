"""Build the full-text search documents of traces that do not have one yet."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from traces import searchindex


class Command(BaseCommand):
    help = (
        "Index every trace that is not searchable yet (bulk imports leave this to a worker; "
        "this does it now, in this process). PostgreSQL only; a no-op on SQLite."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=searchindex.INDEX_BATCH,
            help=f"traces per committed batch (default {searchindex.INDEX_BATCH})",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=searchindex.INDEX_JOBS,
            help=f"indexers side by side, one database connection each (default {searchindex.INDEX_JOBS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        jobs = options["jobs"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if not 1 <= jobs <= 16:
            raise CommandError("--jobs must be between 1 and 16.")
        if not searchindex.enabled():
            self.stdout.write("Nothing to index: full-text indexing is PostgreSQL-only (SQLite searches the rows).")
            return
        waiting = searchindex.backlog()
        self.stdout.write(f"{waiting:,} traces wait for indexing.")
        lock = threading.Lock()
        counts = [0] * jobs
        reported = 0

        def indexer(n: int) -> None:
            def progress(done: int) -> None:
                nonlocal reported
                with lock:
                    counts[n] = done
                    total = sum(counts)
                    if total - reported >= 50_000:
                        reported = total
                        self.stdout.write(f"  {total:,} indexed")

            counts[n] = searchindex.index_backlog(batch_size=batch_size, progress=progress)

        def thread_indexer(n: int) -> None:
            try:
                indexer(n)
            finally:
                connection.close()  # this thread's own connection

        if jobs == 1:
            indexer(0)
            done = counts[0]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for future in [pool.submit(thread_indexer, n) for n in range(jobs)]:
                    future.result()
            done = sum(counts)
        self.stdout.write(f"{done:,} traces indexed; {searchindex.backlog():,} waiting.")
