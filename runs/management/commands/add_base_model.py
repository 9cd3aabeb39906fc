"""Validate a Hugging Face checkpoint folder and register it under MODELS_DIR as a base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.basemodels import add_base_model


class Command(BaseCommand):
    help = (
        "Check PATH (config.json, *.safetensors, tokenizer files) and register it under MODELS_DIR as NAME "
        "(default: the folder's name), copied (default) or symlinked; launch on it as local:NAME."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--name", help="folder name under MODELS_DIR (letters, digits, '.', '_', '-')")
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--copy", dest="link", action="store_false", help="copy the folder (default)")
        how.add_argument("--link", dest="link", action="store_true", help="symlink to the folder instead of copying")
        parser.set_defaults(link=False)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            entry = add_base_model(options["path"], options["name"], link=options["link"])
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        how = "Linked" if options["link"] else "Copied"
        self.stdout.write(
            f"{how} {entry.name}: {entry.family_label}, {entry.parameters_label} parameters, {entry.dtype}, "
            f"tokenizer {entry.tokenizer} → {entry.key}"
        )
        if not entry.trainable:
            self.stdout.write(f"Not trainable yet: {entry.reason}")
