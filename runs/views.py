"""Run pages: history, launch, detail (live log, chart, status), compare, artifacts."""

from __future__ import annotations

from typing import IO, Any, cast
from urllib.parse import urlencode

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from runs.api.evaluation import BaselineSerializer
from runs.charts import line_chart
from runs.evalsets import EvalSetInvalid, evalset_from_dataset, import_evalset
from runs.evaluation import (
    EvaluationConflict,
    check_regression,
    compare_runs,
    create_baseline,
    launch_evaluation,
    leaderboard,
)
from runs.filters import RunFilter
from runs.forms import RunLaunchForm
from runs.hyperparameters import BOUNDS
from runs.launching import artifact_path, delete_run, launch_run, list_artifacts, retry_run
from runs.models import (
    CONFIG_FIELDS,
    EvalSet,
    Evaluation,
    ModelVersion,
    Prediction,
    RegisteredModel,
    RegressionBaseline,
    Run,
    RunLog,
)
from runs.registry import archive_path, promote
from runs.validation import LaunchInvalid, validate_launch
from traces.models import Dataset
from tunixrt.jobs import Job, JobNotActive
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.pagination import InvalidPage, keyset_page
from tunixrt.roles import Action, require

STOP_POLLING = 286  # htmx stops an `every Ns` trigger on this status


def _notify_queued(request: HtmxHttpRequest, job: Job) -> None:
    (messages.warning if job.awaiting_broker else messages.success)(request, job.queued_notice)
LOG_TAIL = 200


def _stop_when_done(response: HttpResponse, run: Run | Evaluation) -> HttpResponse:
    if not run.is_active:
        response.status_code = STOP_POLLING
    return response


def run_list(request: HtmxHttpRequest) -> TemplateResponse:
    filterset = RunFilter(request.GET or None, queryset=Run.objects.select_related("dataset"))
    rows: list[Run] = []
    next_cursor = None
    page_error = ""
    try:
        rows, next_cursor = keyset_page(filterset.qs, request.GET.get("cursor"), 50)
    except InvalidPage as exc:
        page_error = f"{exc.field}: {exc}"
    params = request.GET.copy()
    params.pop("cursor", None)
    context = {
        "filter": filterset,
        "rows": rows,
        "next_cursor": next_cursor,
        "query": params.urlencode(),
        "page_error": page_error,
    }
    template = "runs/run_list.html"
    if request.htmx:
        template += "#run-rows" if request.GET.get("cursor") else "#run-table"
    return TemplateResponse(request, template, context)


def run_row(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One history row; polled while the run is active."""
    run = get_object_or_404(Run.objects.select_related("dataset"), pk=pk)
    response = TemplateResponse(request, "runs/run_list.html#run-row", {"run": run})
    return _stop_when_done(response.render(), run)


@require_http_methods(["GET", "POST"])
def run_launch(request: HtmxHttpRequest) -> HttpResponse:
    require(request.user, Action.CREATE)
    if request.method == "POST":
        form = RunLaunchForm(request.POST)
        if form.is_valid():
            run = launch_run(form.values, request.user)
            _notify_queued(request, run)
            return redirect("run-detail", pk=run.pk)
        return TemplateResponse(request, "runs/run_launch.html", {"form": form}, status=400)
    initial = {k: v for k, v in request.GET.items()}
    return TemplateResponse(request, "runs/run_launch.html", {"form": RunLaunchForm(initial=initial)})


def _chart(runs: list[Run], names: tuple[str, ...] = ("train_loss", "eval_loss")) -> Any:
    series = []
    for n, run in enumerate(runs):
        for name in names:
            label = name.replace("_", " ") if len(runs) == 1 else f"run {run.pk} {name.replace('_', ' ')}"
            css = f"s{n} {name}"
            series.append((label, css, run.metric_series(name, 400)))
    return line_chart(series)


def _artifact_groups(run: Run) -> dict[str, Any]:
    """Final model and data files listed one by one; orbax checkpoint files folded per step."""
    files = list_artifacts(run) if run.is_terminal else []
    main = [f for f in files if not f["path"].startswith("checkpoints/")]
    steps: dict[str, dict[str, Any]] = {}
    for f in files:
        if f["path"].startswith("checkpoints/"):
            step = f["path"].split("/")[1]
            group = steps.setdefault(step, {"step": step, "files": [], "size": 0})
            group["files"].append(f)
            group["size"] += f["size"]
    return {"artifacts": main, "checkpoints": list(steps.values()), "has_files": bool(files)}


def _smaller_retry(run: Run) -> dict[str, Any]:
    """For a run the kernel killed (out of memory): the launch form filled in with half the batch.

    At batch size 1 the sequence length is halved instead.
    """
    values: dict[str, Any] = {"dataset": run.dataset.key, **run.config()}
    values.pop("mode")
    if run.batch_size > BOUNDS["batch_size"].low:
        values["batch_size"] = max(int(BOUNDS["batch_size"].low), run.batch_size // 2)
    else:
        values["max_seq_length"] = max(int(BOUNDS["max_seq_length"].low), run.max_seq_length // 2)
    return {
        "batch_size": values["batch_size"],
        "max_seq_length": values["max_seq_length"],
        "tokens_per_step": run.batch_size * run.max_seq_length,
        "url": f"{reverse('run-launch')}?{urlencode(values)}",
    }


def _detail_context(run: Run) -> dict[str, Any]:
    logs = list(RunLog.objects.filter(run=run).order_by("-seq")[:LOG_TAIL])[::-1]
    return {
        "run": run,
        "config": run.config(),
        "chart": _chart([run]),
        "logs": logs,
        "last_seq": logs[-1].seq if logs else -1,
        "poll_logs": run.is_active,
        **_artifact_groups(run),
        "summary_items": sorted((k, v) for k, v in run.summary.items() if k != "samples"),
        "evaluations": run.evaluations.select_related("eval_set").order_by("-created_at")[:20],
        "eval_sets": EvalSet.objects.order_by("name"),
        "versions": run.model_versions.select_related("model"),
        "smaller": _smaller_retry(run) if run.killed_by_system else None,
    }


def run_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("dataset", "created_by"), pk=pk)
    context = _detail_context(run)
    fragment = request.GET.get("fragment")
    if request.htmx and fragment in ("status", "chart"):
        response = TemplateResponse(request, f"runs/run_detail.html#{fragment}", context).render()
        if fragment == "status" and not run.is_active:
            response["HX-Refresh"] = "true"  # show the summary, artifacts and final chart
        return _stop_when_done(response, run)
    return TemplateResponse(request, "runs/run_detail.html", context)


def run_logs(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Log lines after `since_seq`, appended to the page's log tail while the run is active.

    The fragment carries the next poller: every second while the run is active; once it
    has ended, one more fetch while lines still come (more than 500, or written just
    before the end), and none after that.
    """
    run = get_object_or_404(Run, pk=pk)
    try:
        since = int(request.GET.get("since_seq", "-1"))
    except ValueError:
        since = -1
    lines = list(RunLog.objects.filter(run=run, seq__gt=since).order_by("seq")[:500])
    last_seq = lines[-1].seq if lines else since
    context = {"run": run, "logs": lines, "last_seq": last_seq, "poll_logs": run.is_active or bool(lines)}
    response = TemplateResponse(request, "runs/run_detail.html#log-lines", context).render()
    if not run.is_active and not lines:
        response.status_code = STOP_POLLING
    return response


@require_POST
def run_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=pk)
    require(request.user, Action.CHANGE, run)
    try:
        run.cancel()
        messages.info(request, f"Run {pk}: {run.get_status_display().lower()}.")
    except JobNotActive as exc:
        messages.error(request, str(exc))
    return redirect("run-detail", pk=pk)


@require_POST
def run_retry(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("dataset"), pk=pk)
    require(request.user, Action.CHANGE, run)
    try:
        validate_launch({"dataset": run.dataset.key, **run.config()})
        new = retry_run(run, request.user)
    except LaunchInvalid as exc:
        messages.error(request, f"Cannot retry: {exc}")
        return redirect("run-detail", pk=pk)
    _notify_queued(request, new)
    return redirect("run-detail", pk=new.pk)


@require_http_methods(["GET", "POST"])
def run_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=pk)
    require(request.user, Action.CHANGE, run)
    if request.method == "POST":
        try:
            delete_run(run)
        except JobNotActive as exc:
            messages.error(request, str(exc))
            return redirect("run-detail", pk=pk)
        messages.success(request, f"Run {pk} and its files were deleted.")
        return redirect("run-list")
    return TemplateResponse(request, "runs/run_confirm_delete.html", {"run": run})


def run_artifact(request: HtmxHttpRequest, pk: int, path: str) -> HttpResponseBase:
    run = get_object_or_404(Run, pk=pk)
    file = artifact_path(run, path)
    if file is None:
        raise Http404("No such file in this run.")
    return FileResponse(file.open("rb"), as_attachment=True, filename=file.name)


def run_compare(request: HtmxHttpRequest) -> TemplateResponse:
    raw = request.GET.getlist("id")
    error = ""
    runs: list[Run] = []
    ids = []
    for value in raw:
        if value.isascii() and value.isdigit() and len(value) < 19 and int(value) not in ids:
            ids.append(int(value))
    if raw and not 2 <= len(ids) <= 4:
        error = "Pick 2 to 4 different runs."
    elif ids:
        found = {r.pk: r for r in Run.objects.select_related("dataset").filter(pk__in=ids)}
        missing = [str(i) for i in ids if i not in found]
        if missing:
            error = f"No run {', '.join(missing)}."
        else:
            runs = [found[i] for i in ids]
    rows = []
    if runs:
        for name in ("dataset", *CONFIG_FIELDS):
            values = [r.dataset.key if name == "dataset" else getattr(r, name) for r in runs]
            rows.append({"name": name, "values": values, "differs": len({str(v) for v in values}) > 1})
        for name in ("steps_done", "final_train_loss", "best_eval_loss", "tokens_per_s", "peak_rss_mb"):
            values = [r.summary.get(name) for r in runs]
            rows.append({"name": name, "values": values, "differs": len({str(v) for v in values}) > 1, "result": True})
    context = {
        "runs": runs,
        "error": error,
        "rows": rows,
        "chart": _chart(runs) if runs else None,
        "recent": Run.objects.select_related("dataset").order_by("-created_at", "-id")[:30],
        "picked": ids,
    }
    return TemplateResponse(request, "runs/run_compare.html", context)


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
        return _stop_when_done(response, evaluation)
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
    _notify_queued(request, evaluation)
    return redirect("evaluation-detail", pk=evaluation.pk)


def leaderboard_page(request: HtmxHttpRequest) -> TemplateResponse:
    eval_sets = list(EvalSet.objects.order_by("name"))
    eval_set = EvalSet.objects.filter(name=request.GET.get("eval_set", "")).first() or (
        eval_sets[0] if eval_sets else None
    )
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
    context = {"eval_sets": eval_sets, "eval_set": eval_set, "rows": rows, "params": request.GET, "sort": sort}
    return TemplateResponse(request, "runs/leaderboard.html", context)


def evaluation_compare(request: HtmxHttpRequest) -> TemplateResponse:
    eval_set = EvalSet.objects.filter(name=request.GET.get("eval_set", "")).first()
    context: dict[str, Any] = {"eval_sets": EvalSet.objects.order_by("name"), "params": request.GET}
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
    elif request.GET:
        context["error"] = "Pick an eval set and two run ids."
    return TemplateResponse(request, "runs/evaluation_compare.html", context)


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
        serializer = BaselineSerializer(data=request.POST)
        if serializer.is_valid():
            data = serializer.validated_data
            try:
                create_baseline(
                    data["name"], data["run"], data["eval_set"], metric=data["metric"],
                    direction=data["direction"], tolerance_pct=data["tolerance_pct"],
                )
            except EvaluationConflict as exc:
                errors = {"run": [str(exc)]}
            else:
                messages.success(request, f"Baseline {data['name']} created.")
                return redirect("regression")
        else:
            errors = {k: [str(m) for m in v] for k, v in serializer.errors.items()}
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
        "form": request.POST if request.method == "POST" else {},
    }
    return TemplateResponse(request, "runs/regression.html", context, status=400 if errors else 200)


def model_registry(request: HtmxHttpRequest) -> TemplateResponse:
    models = RegisteredModel.objects.prefetch_related("versions", "versions__run")
    return TemplateResponse(request, "runs/model_registry.html", {"models": models})


@require_POST
def run_promote(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require(request.user, Action.PROMOTE)
    run = get_object_or_404(Run.objects.select_related("dataset"), pk=pk)
    try:
        version = promote(run, request.POST.get("name", "").strip(), user=request.user)
    except (EvaluationConflict, ValueError) as exc:
        messages.error(request, f"Cannot promote: {exc}")
        return redirect("run-detail", pk=pk)
    messages.success(request, f"Run {pk} promoted to {version.model.name}:v{version.version}.")
    return redirect("model-registry")


def model_download(request: HtmxHttpRequest, name: str, version: int) -> HttpResponseBase:
    entry = get_object_or_404(ModelVersion, model__name=name, version=version)
    path = archive_path(entry)
    if path is None:
        raise Http404("The archive is missing.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"{name}-v{version}.tar.gz")
