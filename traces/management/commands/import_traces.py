"""Import reasoning traces from JSON Lines or JSON array files."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from traces import searchindex
from traces.importing import import_trace_files
from traces.management.import_command import ImportFilesCommand


class Command(ImportFilesCommand):
    help = (
        "Import traces from .jsonl or .json (array) files, streamed in constant memory. "
        "Exact duplicates are skipped; bad lines are reported and the good ones imported. "
        "Exits 1 when nothing was imported, or with --strict on any bad line (nothing stored)."
    )

    unit = "traces"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--source", default="", help="source for traces whose meta has none")

    def handle(self, *args: Any, **options: Any) -> None:
        if len(options["source"]) > 128:
            raise CommandError("--source must be at most 128 characters.")
        report = self.run_import(import_trace_files, options, source=options["source"])
        if report.search is not searchindex.Indexing.NONE:
            self.stdout.write(report.search.describe(report.deferred or report.created))
        self.require_something(report)
