"""Import reasoning traces from JSON Lines or JSON array files."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces import searchindex
from traces.importing import DEFAULT_BATCH_SIZE, ImportReport, import_trace_files
from tunixrt.roles import Action, command_user


class Command(BaseCommand):
    help = (
        "Import traces from .jsonl or .json (array) files, streamed in constant memory. "
        "Exact duplicates are skipped; bad lines are reported and the good ones imported. "
        "Exits 1 when nothing was imported, or with --strict on any bad line (nothing stored)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--source", default="", help="source for traces whose meta has none")
        parser.add_argument("--format", choices=["jsonl", "json"], default=None, dest="fmt")
        parser.add_argument("--strict", action="store_true", help="any bad line fails the whole import")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument("--quiet-progress", action="store_true", help="no progress lines")
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="the traces' owner (role checked); default: no owner, so only maintainers may delete them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.CREATE)
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= 100_000:
            raise CommandError("--batch-size must be between 1 and 100000.")
        if len(options["source"]) > 128:
            raise CommandError("--source must be at most 128 characters.")

        def progress(report: ImportReport) -> None:
            if not options["quiet_progress"]:
                self.stderr.write(
                    f"  {report.read:,} read, {report.created:,} created, "
                    f"{report.duplicates:,} duplicates, {report.bad:,} bad ({report.rate:,.0f}/s)"
                )

        try:
            report = import_trace_files(
                options["files"],
                source=options["source"],
                strict=options["strict"],
                batch_size=batch_size,
                fmt=options["fmt"],
                progress=progress,
                user=user,
            )
        except OSError as exc:
            raise CommandError(f"Cannot read {exc.filename}: {exc.strerror}") from None

        for line in report.error_lines():
            self.stderr.write(line)
        summary = report.summary("traces")
        if report.aborted:
            raise CommandError(f"Strict import aborted, nothing stored: {summary}")
        self.stdout.write(summary)
        if report.search is not searchindex.Indexing.NONE:
            self.stdout.write(report.search.describe(report.deferred or report.created))
        if report.created == 0 and report.duplicates == 0:
            raise CommandError("Nothing was imported.")
