"""Evaluation pages: eval sets, evaluations (live progress), launching one, leaderboard, run comparison."""

from __future__ import annotations

from typing import IO, Any, cast

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from runs import pickers
from runs.charts import accuracy_bars, run_label
from runs.evaluation.evalsets import EvalSetInvalid, evalset_from_dataset, import_evalset
from runs.evaluation.leaderboard import compare_runs, leaderboard, newest_results_set
from runs.evaluation.running import EvaluationConflict, launch_evaluation
from runs.models import EvalSet, Evaluation, Prediction, Run
from runs.views import notify_queued, stop_when_done
from traces.models import Dataset
from tunixrt.jobs import JobNotActive
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.roles import Action, require


def evaluation_home(request: HtmxHttpRequest) -> HttpResponse:
    """Eval sets (upload JSONL or take a dataset's validation split) and recent evaluations."""
    error_lines: list[tuple[int, str]] = []
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        require(request.user, Action.CREATE)
        name = request.POST.get("name", "").strip()
        try:
            if request.POST.get("dataset"):
                try:
                    dataset = Dataset.objects.by_key(request.POST["dataset"])
                except Dataset.DoesNotExist:
                    raise EvalSetInvalid({"dataset": [f"No dataset {request.POST['dataset']!r}."]}) from None
                eval_set = evalset_from_dataset(dataset, name, user=request.user)
            elif "file" in request.FILES:
                upload = cast(IO[bytes], request.FILES["file"])
                eval_set = import_evalset(upload, name, source="upload", user=request.user)
            else:
                raise EvalSetInvalid({"file": ["No file was sent: choose a JSONL file or a dataset."]})
        except EvalSetInvalid as exc:
            if isinstance(exc.errors, dict):
                errors = exc.errors
            else:
                error_lines = exc.errors
        else:
            messages.success(request, f"Eval set {eval_set.name} created with {eval_set.item_count} items.")
            return redirect("evalset-detail", name=eval_set.name)
    context = {
        "eval_sets": EvalSet.objects.all()[:100],
        "evaluations": Evaluation.objects.select_related("run", "eval_set")[:30],
        "datasets": Dataset.objects.filter(stats__validation__gt=0).order_by("-created_at")[:100],
        "errors": errors,
        "error_lines": error_lines,
    }
    status = 400 if errors or error_lines else 200
    return TemplateResponse(request, "runs/evaluation_home.html", context, status=status)


def evalset_detail(request: HtmxHttpRequest, name: str) -> TemplateResponse:
    eval_set = get_object_or_404(EvalSet, name=name)
    context = {
        "eval_set": eval_set,
        "items": eval_set.items.order_by("position")[:500],
        "rows": leaderboard(eval_set)[:10],
    }
    return TemplateResponse(request, "runs/evalset_detail.html", context)


def evaluation_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    evaluation = get_object_or_404(Evaluation.objects.select_related("run", "eval_set", "run__dataset"), pk=pk)
    predictions = Prediction.objects.filter(evaluation=evaluation).select_related("item").order_by("item__position")
    wrong_only = request.GET.get("wrong") == "1"
    if wrong_only:
        predictions = predictions.filter(correct=False)
    context = {
        "evaluation": evaluation,
        "predictions": predictions[:1000],
        "wrong_only": wrong_only,
        "groups": [(g, evaluation.scorecard.get(g, {})) for g in ("category", "section", "difficulty")],
    }
    if request.htmx and request.GET.get("fragment") == "progress":
        response = TemplateResponse(request, "runs/evaluation_detail.html#progress", context).render()
        if not evaluation.is_active:
            response["HX-Refresh"] = "true"
        return stop_when_done(response, evaluation)
    return TemplateResponse(request, "runs/evaluation_detail.html", context)


@require_POST
def evaluation_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    evaluation = get_object_or_404(Evaluation, pk=pk)
    require(request.user, Action.CHANGE, evaluation)
    try:
        evaluation.cancel()
    except JobNotActive as exc:
        messages.error(request, str(exc))
    return redirect("evaluation-detail", pk=pk)


@require_POST
def run_evaluate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require(request.user, Action.CREATE)
    run = get_object_or_404(Run, pk=pk)
    eval_set = EvalSet.objects.filter(name=request.POST.get("eval_set", "")).first()
    if eval_set is None:
        messages.error(request, "Choose an eval set.")
        return redirect("run-detail", pk=pk)
    try:
        tokens = int(request.POST.get("max_new_tokens") or 64)
        evaluation = launch_evaluation(
            run, eval_set, baseline=request.POST.get("baseline") == "on", max_new_tokens=tokens, user=request.user
        )
    except (EvaluationConflict, ValueError) as exc:
        messages.error(request, f"Cannot evaluate: {exc}")
        return redirect("run-detail", pk=pk)
    notify_queued(request, evaluation)
    return redirect("evaluation-detail", pk=evaluation.pk)


def leaderboard_page(request: HtmxHttpRequest) -> TemplateResponse:
    eval_sets = list(EvalSet.objects.order_by("name"))
    eval_set = EvalSet.objects.filter(name=request.GET.get("eval_set", "")).first() or newest_results_set(eval_sets)
    rows: list[Evaluation] = []
    if eval_set is not None:
        rows = list(leaderboard(
            eval_set,
            dataset=request.GET.get("dataset", ""),
            base_model=request.GET.get("base_model", ""),
            baseline=request.GET.get("baseline") == "1",
        )[:200])
    sort = request.GET.get("sort", "accuracy")
    if sort == "finished":
        rows.sort(key=lambda e: e.finished_at or e.created_at, reverse=True)
    elif sort == "run":
        rows.sort(key=lambda e: e.run_id, reverse=True)
    chart = accuracy_bars(
        (f"{run_label(e.run)}{' base model' if e.baseline else ''}", e.accuracy, e.baseline) for e in rows
    )
    context = {
        "eval_sets": eval_sets, "eval_set": eval_set, "rows": rows, "params": request.GET, "sort": sort, "chart": chart,
    }
    return TemplateResponse(request, "runs/leaderboard.html", context)


def evaluation_compare(request: HtmxHttpRequest) -> TemplateResponse:
    eval_set = EvalSet.objects.filter(name=request.GET.get("eval_set", "")).first()
    eval_sets = list(EvalSet.objects.order_by("name"))
    chosen = eval_set or (eval_sets[0] if eval_sets else None)
    context: dict[str, Any] = {
        "eval_sets": eval_sets,
        "params": request.GET,
        # Runs evaluated on the chosen set (the first one until one is chosen): what can be compared on it.
        "run_choices": pickers.evaluated_runs(chosen) if chosen else [],
    }
    a, b = request.GET.get("a", ""), request.GET.get("b", "")
    if eval_set and all(v.isascii() and v.isdigit() and len(v) < 19 for v in (a, b)):
        run_a = Run.objects.filter(pk=int(a)).first()
        run_b = Run.objects.filter(pk=int(b)).first()
        if run_a is None or run_b is None:
            context["error"] = "No such run."
        else:
            try:
                result = compare_runs(eval_set, run_a, run_b)
            except EvaluationConflict as exc:
                context["error"] = str(exc)
            else:
                only = request.GET.get("change", "")
                if only in ("improved", "regressed", "unchanged"):
                    result["items"] = [r for r in result["items"] if r["change"] == only]
                context.update(result=result, eval_set=eval_set, run_a=run_a, run_b=run_b)
    elif request.GET and not request.htmx:
        context["error"] = "Pick an eval set and two runs."
    return TemplateResponse(request, "runs/evaluation_compare.html", context)
