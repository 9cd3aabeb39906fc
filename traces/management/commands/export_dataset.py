"""Export a dataset as JSONL in a trainer format."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.choices import DatasetStatus, ExportFormat
from traces.datasets.exporting import export_dataset
from traces.models import Dataset


class Command(BaseCommand):
    help = "Write dataset KEY (name@vN) to OUT ('-' for standard output) in --format."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key")
        parser.add_argument("out")
        parser.add_argument("--format", choices=ExportFormat.values, default=ExportFormat.TRACE, dest="fmt")
        parser.add_argument("--split", choices=["all", "train", "validation"], default="all")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            dataset = Dataset.objects.by_key(options["key"])
        except Dataset.DoesNotExist:
            raise CommandError(f"No dataset {options['key']!r}.") from None
        if dataset.status != DatasetStatus.READY:
            raise CommandError(f"Dataset {dataset.key} is {dataset.status}, not ready.")
        out = options["out"]
        try:
            if out == "-":
                count = export_dataset(dataset, options["fmt"], sys.stdout.buffer, options["split"])
            else:
                with open(out, "wb") as f:
                    count = export_dataset(dataset, options["fmt"], f, options["split"])
        except OSError as exc:
            raise CommandError(f"Cannot write {out}: {exc.strerror}") from None
        self.stderr.write(f"{count:,} records written")
