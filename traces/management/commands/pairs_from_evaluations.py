"""Generate preference pairs from two evaluations on one eval set."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import EvalSet, Evaluation, Run
from traces.preferences.generating import GenerationInvalid, pairs_from_evaluations
from tunixrt.roles import Action, command_user


class Command(BaseCommand):
    help = (
        "For each item one evaluation answered correctly and the other did not, store a preference pair "
        "(the correct output chosen over the wrong one). Name two completed evaluations on one eval set "
        "(EVALUATION OTHER), or --run RUN --eval-set NAME for a trained run against its base (the run's "
        "latest baseline evaluation). Idempotent: pairs stored before are counted as duplicates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("evaluations", nargs="*", type=int, metavar="EVALUATION")
        parser.add_argument("--run", type=int, help="a run evaluated both trained and as its base on --eval-set")
        parser.add_argument("--eval-set", help="the eval set of --run's evaluations")
        parser.add_argument("--user", metavar="USERNAME", help="the pairs' owner (role checked)")

    def _latest(self, run: Run, eval_set: EvalSet, baseline: bool) -> Evaluation:
        evaluation = Evaluation.objects.filter(run=run, eval_set=eval_set, baseline=baseline, is_latest=True).first()
        if evaluation is None:
            what = "baseline (base model)" if baseline else "trained-model"
            raise CommandError(f"Run {run.pk} has no completed {what} evaluation on {eval_set.name}.")
        return evaluation

    def handle(self, *args: Any, **options: Any) -> None:
        user = command_user(options["user"], Action.CREATE)
        ids: list[int] = options["evaluations"]
        if options["run"] is not None:
            if ids or not options["eval_set"]:
                raise CommandError("Give --run with --eval-set, and no evaluation ids.")
            run = Run.objects.filter(pk=options["run"]).first()
            eval_set = EvalSet.objects.filter(name=options["eval_set"]).first()
            if run is None:
                raise CommandError(f"No run {options['run']}.")
            if eval_set is None:
                raise CommandError(f"No eval set {options['eval_set']!r}.")
            first, second = self._latest(run, eval_set, False), self._latest(run, eval_set, True)
        else:
            if len(ids) != 2:
                raise CommandError("Name two evaluations (EVALUATION OTHER), or --run and --eval-set.")
            found = Evaluation.objects.select_related("eval_set").in_bulk(ids)
            missing = [str(i) for i in ids if i not in found]
            if missing:
                raise CommandError(f"No evaluation {', '.join(missing)}.")
            first, second = found[ids[0]], found[ids[1]]
        try:
            result = pairs_from_evaluations(first, second, user)
        except GenerationInvalid as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{result.compared:,} items compared, {result.disagreements:,} answered right by one and wrong by the "
            f"other: {result.created:,} pairs created, {result.duplicates:,} already stored, {result.skipped:,} skipped"
        )
