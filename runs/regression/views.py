"""The regression gate page: create and delete baselines, check a run against one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from runs import pickers
from runs.evaluation.running import EvaluationConflict
from runs.models import EvalSet, RegressionBaseline, Run
from runs.regression.gates import BaselineInvalid, check_regression, create_baseline, validate_baseline
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.roles import Action, require


@require_http_methods(["GET", "POST"])
def regression_page(request: HtmxHttpRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    check: dict[str, Any] | None = None
    if request.method == "POST":
        require(request.user, Action.BASELINES)
    if request.method == "POST" and request.POST.get("action") == "delete":
        RegressionBaseline.objects.filter(name=request.POST.get("name", "")).delete()
        messages.success(request, "Baseline deleted.")
        return redirect("regression")
    if request.method == "POST":
        try:
            data = validate_baseline(request.POST)
            create_baseline(
                data["name"], data["run"], data["eval_set"], metric=data["metric"],
                direction=data["direction"], tolerance_pct=data["tolerance_pct"],
            )
        except BaselineInvalid as exc:
            errors = exc.errors
        except EvaluationConflict as exc:
            errors = {"run": [str(exc)]}
        else:
            messages.success(request, f"Baseline {data['name']} created.")
            return redirect("regression")
    run_id = request.GET.get("run", "")
    if request.GET.get("baseline") and run_id.isascii() and run_id.isdigit() and len(run_id) < 19:
        baseline = RegressionBaseline.objects.filter(name=request.GET["baseline"]).first()
        run = Run.objects.filter(pk=int(run_id)).first()
        if baseline and run:
            try:
                check = check_regression(baseline, run)
            except EvaluationConflict as exc:
                check = {"error": str(exc)}
        else:
            check = {"error": "No such baseline or run."}
    context = {
        "baselines": RegressionBaseline.objects.select_related("eval_set", "run"),
        "eval_sets": EvalSet.objects.order_by("name"),
        "errors": errors,
        "check": check,
        # The check form shows what was checked, so the next check starts from it.
        "checked": {"baseline": request.GET.get("baseline", ""), "run": run_id},
        "form": request.POST if request.method == "POST" else {},
        "run_choices": pickers.evaluated_runs(),
    }
    return TemplateResponse(request, "runs/regression.html", context, status=400 if errors else 200)
