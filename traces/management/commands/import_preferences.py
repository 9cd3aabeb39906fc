"""Import preference pairs from JSON Lines (or JSON array) files."""

from __future__ import annotations

from typing import Any

from traces.management.import_command import ImportFilesCommand
from traces.preferences.importing import import_preference_files


class Command(ImportFilesCommand):
    help = (
        "Import preference pairs ({prompt, chosen, rejected, optional note and meta} per line) from .jsonl "
        "or .json (array) files, streamed in constant memory. Pairs already stored are skipped; bad lines are "
        "reported as FILE:LINE: reason and the good ones imported. Exits 1 when nothing was imported, or with "
        "--strict on any bad line (nothing stored)."
    )

    unit = "pairs"

    def handle(self, *args: Any, **options: Any) -> None:
        self.require_something(self.run_import(import_preference_files, options))
