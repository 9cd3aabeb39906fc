"""Evaluate a run's model (or its untrained base) on an eval set."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.choices import RunStatus
from runs.evaluation.running import EvaluationConflict, launch_evaluation
from runs.models import EvalSet, Run
from tunixrt.roles import Action, command_user


class Command(BaseCommand):
    help = "Queue an evaluation of RUN on EVALSET; with --wait, show progress and the scorecard."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", type=int)
        parser.add_argument("evalset")
        parser.add_argument("--baseline", action="store_true", help="evaluate the untrained base model")
        parser.add_argument("--max-new-tokens", type=int, default=64)
        parser.add_argument("--wait", action="store_true")
        parser.add_argument(
            "--user", metavar="USERNAME", help="act for this user (owner, role checked); default: the operator"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.CREATE)
        run = Run.objects.filter(pk=options["run"]).first()
        if run is None:
            raise CommandError(f"No run {options['run']}.")
        eval_set = EvalSet.objects.filter(name=options["evalset"]).first()
        if eval_set is None:
            raise CommandError(f"No eval set {options['evalset']!r}.")
        try:
            evaluation = launch_evaluation(
                run, eval_set, baseline=options["baseline"], max_new_tokens=options["max_new_tokens"], user=user
            )
        except (EvaluationConflict, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Evaluation {evaluation.pk} queued ({eval_set.item_count} items).")
        if evaluation.awaiting_broker:
            self.stderr.write(evaluation.queued_notice)
        if not options["wait"]:
            return
        shown = -1
        while not evaluation.is_terminal:
            time.sleep(1)
            evaluation.refresh_from_db()
            if evaluation.done != shown:
                shown = evaluation.done
                self.stdout.write(f"  {evaluation.done}/{evaluation.total} answered, {evaluation.correct} correct")
        if evaluation.status != RunStatus.COMPLETED:
            raise CommandError(f"Evaluation {evaluation.pk} ended {evaluation.status}: {evaluation.error}")
        overall = evaluation.scorecard["overall"]
        self.stdout.write(f"accuracy {overall['accuracy']:.4f} ({overall['correct']}/{overall['n']})")
        for group in ("category", "section", "difficulty"):
            for key, row in evaluation.scorecard.get(group, {}).items():
                if key != "—":
                    self.stdout.write(f"  {group} {key}: {row['accuracy']:.4f} ({row['correct']}/{row['n']})")
