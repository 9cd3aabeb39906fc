"""Promote a completed run to the model registry as NAME's next version."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.evaluation.running import EvaluationConflict
from runs.models import Run
from runs.registry.promotion import promote
from tunixrt.roles import Action, command_user


class Command(BaseCommand):
    help = "Copy RUN's final model into the registry as NAME:vN, with checksum, metrics and provenance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", type=int)
        parser.add_argument("name")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--user", metavar="USERNAME", help="act for this user (owner, role checked); default: the operator"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.PROMOTE)
        run = Run.objects.select_related("dataset").filter(pk=options["run"]).first()
        if run is None:
            raise CommandError(f"No run {options['run']}.")
        try:
            version = promote(run, options["name"], description=options["description"], user=user)
        except (EvaluationConflict, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Promoted run {run.pk} to {version.model.name}:v{version.version} (sha256 {version.checksum})"
        )
