"""Export traces as JSON Lines in the capture format (imports back unchanged)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.exporting import export_traces


class Command(BaseCommand):
    help = "Write traces (oldest first) as JSONL to OUT ('-' for standard output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", metavar="OUT")
        parser.add_argument("--source", default=None, help="only traces from this source")
        parser.add_argument(
            "--reviews",
            action="store_true",
            help="put each trace's current rating and labels in meta.human_review "
            "(the file then re-imports as new traces, not the same ones)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = options["out"]
        try:
            if out == "-":
                count = export_traces(sys.stdout.buffer, source=options["source"], reviews=options["reviews"])
            else:
                with open(out, "wb") as f:
                    count = export_traces(f, source=options["source"], reviews=options["reviews"])
        except OSError as exc:
            raise CommandError(f"Cannot write {out}: {exc.strerror}") from None
        self.stderr.write(f"{count:,} traces written")
