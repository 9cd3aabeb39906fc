"""Build the full-text search documents of traces that do not have one yet."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

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

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if not searchindex.enabled():
            self.stdout.write("Nothing to index: full-text indexing is PostgreSQL-only (SQLite searches the rows).")
            return
        waiting = searchindex.backlog()
        self.stdout.write(f"{waiting:,} traces wait for indexing.")
        last = 0

        def progress(done: int) -> None:
            nonlocal last
            if done - last >= 50_000:
                last = done
                self.stdout.write(f"  {done:,} indexed")

        done = searchindex.index_backlog(batch_size=batch_size, progress=progress)
        self.stdout.write(f"{done:,} traces indexed; {searchindex.backlog():,} waiting.")
