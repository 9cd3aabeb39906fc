"""Regression gates: a reference run's metric, with a direction and a tolerance, checked against later runs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from runs.evaluation.leaderboard import latest_evaluation
from runs.evaluation.running import EvaluationConflict
from runs.models import Direction, EvalSet, Evaluation, RegressionBaseline, Run

METRICS = ("accuracy", "error_rate")
Errors = dict[str, list[str]]
SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")


class BaselineInvalid(ValueError):
    """A baseline request with bad fields; `errors` names each (shared by the API and the page)."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def _text(data: Mapping[str, Any], field: str, errors: Errors, *, empty: str) -> str | None:
    """A required text field, trimmed; None (with the reason in `errors`) when it is missing, empty or not text."""
    value = data.get(field)
    if field not in data:
        errors[field] = ["This field is required."]
    elif value is None:
        errors[field] = ["This field may not be null."]
    elif isinstance(value, bool) or not isinstance(value, str | int | float):
        errors[field] = [f"Expected text or a number, got {type(value).__name__}."]
    elif not str(value).strip():
        errors[field] = [empty]
    # PostgreSQL refuses a NUL in a text value: reject it here rather than fail in the lookup.
    elif "\x00" in str(value):
        errors[field] = ["Null characters are not allowed."]
    else:
        return str(value).strip()
    return None


def _choice(data: Mapping[str, Any], field: str, choices: tuple[str, ...], default: str, errors: Errors) -> str:
    value = data.get(field)
    if value is None or value == "":
        return default
    if str(value) not in choices:
        errors[field] = [f'"{value}" is not a valid choice.']
    return str(value)


def validate_baseline(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a request for a new baseline; return its field values or raise BaselineInvalid.

    Missing or empty metric, direction and tolerance take their defaults (accuracy,
    higher, 0 %); the run and eval set must exist.
    """
    errors: Errors = {}
    values: dict[str, Any] = {}

    name = _text(data, "name", errors, empty="This field may not be blank.")
    if name is not None:
        if len(name) > 100:
            errors["name"] = ["Ensure this field has no more than 100 characters."]
        elif not SLUG.match(name):
            errors["name"] = ['Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.']
        elif RegressionBaseline.objects.filter(name=name).exists():
            errors["name"] = ["regression baseline with this name already exists."]
        else:
            values["name"] = name

    run_id = _text(data, "run", errors, empty="This field may not be null.")
    if run_id is not None:
        # A number too long for the id column is no run either (and must not reach the database).
        is_id = run_id.isascii() and run_id.isdigit() and len(run_id) < 19
        run = Run.objects.filter(pk=int(run_id)).first() if is_id else None
        if run is None:
            errors["run"] = [f'Invalid pk "{run_id}" - object does not exist.']
        else:
            values["run"] = run

    eval_set_name = _text(data, "eval_set", errors, empty="This field may not be null.")
    if eval_set_name is not None:
        eval_set = EvalSet.objects.filter(name=eval_set_name).first()
        if eval_set is None:
            errors["eval_set"] = [f"Object with name={eval_set_name} does not exist."]
        else:
            values["eval_set"] = eval_set

    values["metric"] = _choice(data, "metric", METRICS, "accuracy", errors)
    values["direction"] = _choice(data, "direction", tuple(Direction.values), Direction.HIGHER, errors)

    raw = data.get("tolerance_pct")
    try:
        tolerance = 0.0 if raw is None or raw == "" else float(raw)
    except (TypeError, ValueError, OverflowError):
        tolerance = math.nan
    if isinstance(raw, bool) or not math.isfinite(tolerance):
        errors["tolerance_pct"] = ["A valid number is required."]
    elif tolerance < 0:
        errors["tolerance_pct"] = ["Ensure this value is greater than or equal to 0.0."]
    elif tolerance > 100:
        errors["tolerance_pct"] = ["Ensure this value is less than or equal to 100.0."]
    values["tolerance_pct"] = tolerance

    if errors:
        raise BaselineInvalid(errors)
    return values


def metric_value(evaluation: Evaluation, metric: str) -> float:
    accuracy = evaluation.accuracy or 0.0
    return accuracy if metric == "accuracy" else 1.0 - accuracy


def check_regression(baseline: RegressionBaseline, run: Run) -> dict[str, Any]:
    """Compare a run's latest evaluation with the baseline; tolerance is a percentage of the baseline."""
    evaluation = latest_evaluation(run, baseline.eval_set)
    if evaluation is None:
        raise EvaluationConflict(f"Run {run.pk} has no completed evaluation on {baseline.eval_set.name}.")
    current = metric_value(evaluation, baseline.metric)
    margin = abs(baseline.value) * baseline.tolerance_pct / 100.0
    if baseline.direction == Direction.HIGHER:
        threshold = baseline.value - margin
        passed = current >= threshold - 1e-12
    else:
        threshold = baseline.value + margin
        passed = current <= threshold + 1e-12
    return {
        "baseline": baseline.name,
        "metric": baseline.metric,
        "direction": baseline.direction,
        "tolerance_pct": baseline.tolerance_pct,
        "baseline_value": baseline.value,
        "current_value": current,
        "delta": round(current - baseline.value, 6),
        "threshold": threshold,
        "passed": passed,
        "run": run.pk,
        "evaluation": evaluation.pk,
    }


def create_baseline(
    name: str,
    run: Run,
    eval_set: EvalSet,
    *,
    metric: str = "accuracy",
    direction: str = "higher",
    tolerance_pct: float = 0.0,
) -> RegressionBaseline:
    evaluation = latest_evaluation(run, eval_set)
    if evaluation is None:
        raise EvaluationConflict(f"Run {run.pk} has no completed evaluation on {eval_set.name}.")
    return RegressionBaseline.objects.create(
        name=name,
        run=run,
        eval_set=eval_set,
        metric=metric,
        direction=direction,
        tolerance_pct=tolerance_pct,
        value=metric_value(evaluation, metric),
    )
