"""Import an eval set from JSONL (id, prompt, expected_answer, optional category/difficulty/section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify

from runs.evaluation.evalsets import EvalSetInvalid, import_evalset
from tunixrt.roles import Action, command_user


class Command(BaseCommand):
    help = "Import FILE as an eval set (all or nothing: bad lines and duplicate ids are listed with line numbers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--name", help="defaults to the file name")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--user", metavar="USERNAME", help="act for this user (owner, role checked); default: the operator"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.CREATE)
        path = Path(options["file"])
        name = options["name"] or slugify(path.stem.replace(".", "-"))
        try:
            with path.open("rb") as f:
                eval_set = import_evalset(
                    f, name, source=f"file:{path.name}", description=options["description"], user=user
                )
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        except EvalSetInvalid as exc:
            if isinstance(exc.errors, list):
                for line, message in exc.errors:
                    self.stderr.write(f"{path}:{line}: {message}")
            raise CommandError(f"Nothing imported: {exc}") from None
        self.stdout.write(f"Imported eval set {eval_set.name}: {eval_set.item_count} items")
