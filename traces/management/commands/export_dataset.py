"""Export a dataset as JSONL in a trainer format."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.training import templates
from traces.choices import DatasetStatus, ExportFormat
from traces.datasets.exporting import check_format, check_template, export_dataset
from traces.models import Dataset


class Command(BaseCommand):
    help = "Write dataset KEY (name@vN) to OUT ('-' for standard output) in --format."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key")
        parser.add_argument("out")
        parser.add_argument(
            "--format", choices=ExportFormat.values, default=None, dest="fmt",
            help="default: trace (SFT datasets), dpo (preference datasets)",
        )
        parser.add_argument("--split", choices=["all", "train", "validation"], default="all")
        parser.add_argument(
            "--template",
            choices=list(templates.TEMPLATES),
            help="chat template of tunix_sft's text and dpo's turns (default gemma), and of chat records' text",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            dataset = Dataset.objects.by_key(options["key"])
        except Dataset.DoesNotExist:
            raise CommandError(f"No dataset {options['key']!r}.") from None
        if dataset.status != DatasetStatus.READY:
            raise CommandError(f"Dataset {dataset.key} is {dataset.status}, not ready.")
        out = options["out"]
        template = options.get("template")
        if options["fmt"] is None:
            options["fmt"] = ExportFormat.DPO if dataset.is_preference else ExportFormat.TRACE
        try:
            check_format(dataset, options["fmt"])
            check_template(options["fmt"], template)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            if out == "-":
                count = export_dataset(dataset, options["fmt"], sys.stdout.buffer, options["split"], template)
            else:
                with open(out, "wb") as f:
                    count = export_dataset(dataset, options["fmt"], f, options["split"], template)
        except OSError as exc:
            raise CommandError(f"Cannot write {out}: {exc.strerror}") from None
        self.stderr.write(f"{count:,} records written")
