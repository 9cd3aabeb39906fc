"""CI gate: exit 1 when a run regressed against a named baseline."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.evaluation.running import EvaluationConflict
from runs.models import RegressionBaseline, Run
from runs.regression.gates import check_regression


class Command(BaseCommand):
    help = "Compare RUN's latest evaluation with BASELINE; print both values and the delta; exit 1 on a regression."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--baseline", required=True)
        parser.add_argument("--run", type=int, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        baseline = RegressionBaseline.objects.select_related("eval_set").filter(name=options["baseline"]).first()
        if baseline is None:
            raise CommandError(f"No baseline {options['baseline']!r}.")
        run = Run.objects.filter(pk=options["run"]).first()
        if run is None:
            raise CommandError(f"No run {options['run']}.")
        try:
            result = check_regression(baseline, run)
        except EvaluationConflict as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{baseline.metric} on {baseline.eval_set.name} ({baseline.get_direction_display().lower()}, "
            f"tolerance {baseline.tolerance_pct:g}%): baseline {result['baseline_value']:.4f}, "
            f"run {run.pk} {result['current_value']:.4f}, delta {result['delta']:+.4f}"
        )
        if not result["passed"]:
            self.stdout.write(f"REGRESSION: beyond the threshold {result['threshold']:.4f}")
            raise CommandError("regression", returncode=1)
        self.stdout.write("PASS")
