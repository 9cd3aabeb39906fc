"""What `import_traces` and `import_preferences` share: their options, checks, progress and report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.importing import DEFAULT_BATCH_SIZE, ImportReport
from tunixrt.roles import Action, command_user


class ImportFilesCommand(BaseCommand):
    """Stream FILEs through an importer and report as `FILE:LINE: reason` lines and one summary."""

    unit = "traces"  # what the files hold, in messages

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--format", choices=["jsonl", "json"], default=None, dest="fmt")
        parser.add_argument("--strict", action="store_true", help="any bad line fails the whole import")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument("--quiet-progress", action="store_true", help="no progress lines")
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help=f"the {self.unit}' owner (role checked); default: no owner, so only maintainers may delete them",
        )

    def run_import(self, importer: Callable[..., ImportReport], options: dict[str, Any], **extra: Any) -> ImportReport:
        """Check the shared options, import, write the bad lines and the summary; returns the report.

        Raises CommandError when a file cannot be read or a strict import aborted.
        """
        user = command_user(options["user"], Action.CREATE)
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= 100_000:
            raise CommandError("--batch-size must be between 1 and 100000.")

        def progress(report: ImportReport) -> None:
            if not options["quiet_progress"]:
                self.stderr.write(
                    f"  {report.read:,} read, {report.created:,} created, "
                    f"{report.duplicates:,} duplicates, {report.bad:,} bad ({report.rate:,.0f}/s)"
                )

        try:
            report = importer(
                options["files"],
                strict=options["strict"],
                batch_size=batch_size,
                fmt=options["fmt"],
                progress=progress,
                user=user,
                **extra,
            )
        except OSError as exc:
            raise CommandError(f"Cannot read {exc.filename}: {exc.strerror}") from None
        for line in report.error_lines():
            self.stderr.write(line)
        summary = report.summary(self.unit)
        if report.aborted:
            raise CommandError(f"Strict import aborted, nothing stored: {summary}")
        self.stdout.write(summary)
        return report

    def require_something(self, report: ImportReport) -> None:
        if report.created == 0 and report.duplicates == 0:
            raise CommandError("Nothing was imported.")
