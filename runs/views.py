"""Run pages: history, launch, detail (live log, chart, status), compare, artifacts."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from runs import pickers, runtable
from runs.basemodels import catalog
from runs.charts import metric_panels
from runs.filters import RunFilter
from runs.forms import RunDescribeForm, RunLaunchForm
from runs.hyperparameters import BOUNDS
from runs.launching import artifact_path, delete_run, launch_run, list_artifacts, retry_run
from runs.models import CONFIG_FIELDS, EvalSet, Evaluation, Run, RunLog
from runs.presentation import summary_groups
from runs.training.estimates import ESTIMATE_KEYS
from runs.validation import LaunchInvalid, validate_launch
from tunixrt.jobs import Job, JobNotActive
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.pagination import InvalidPage
from tunixrt.roles import Action, require

STOP_POLLING = 286  # htmx stops an `every Ns` trigger on this status
LOG_TAIL = 200


def notify_queued(request: HtmxHttpRequest, job: Job) -> None:
    """Say the job was queued, or (a warning) that it waits for the broker to come back."""
    (messages.warning if job.awaiting_broker else messages.success)(request, job.queued_notice)


def stop_when_done(response: HttpResponse, job: Run | Evaluation) -> HttpResponse:
    """Make a polled fragment's response end the polling once its job has ended."""
    if not job.is_active:
        response.status_code = STOP_POLLING
    return response


def run_list(request: HtmxHttpRequest) -> TemplateResponse:
    filterset = RunFilter(request.GET or None, queryset=Run.objects.select_related("dataset"))
    rows: list[Run] = []
    eval_sets: list[str] = []
    next_cursor = None
    page_error = ""
    sort = request.GET.get("sort", "") or runtable.DEFAULT_SORT
    try:
        rows, next_cursor, eval_sets = runtable.page(filterset.qs, sort, request.GET.get("cursor"))
    except InvalidPage as exc:
        page_error = f"{exc.field}: {exc}"
    except ValueError as exc:
        page_error = f"sort: {exc}"
    params = request.GET.copy()
    params.pop("cursor", None)
    unsorted = params.copy()
    unsorted.pop("sort", None)
    context = {
        "filter": filterset,
        "rows": rows,
        "eval_sets": eval_sets,
        "headers": _sort_headers(sort, eval_sets, unsorted.urlencode()),
        "next_cursor": next_cursor,
        "query": params.urlencode(),
        "page_error": page_error,
    }
    template = "runs/run_list.html"
    if request.htmx:
        template += "#run-rows" if request.GET.get("cursor") else "#run-table"
    return TemplateResponse(request, template, context, status=400 if page_error else 200)


def _sort_headers(sort: str, eval_sets: list[str], query: str) -> list[dict[str, Any]]:
    """Each sortable column's header: its label, the link that sorts by it, and the current direction."""
    columns = [(c.key, c.label) for c in runtable.COLUMNS] + [(f"acc:{n}", f"{n} accuracy") for n in eval_sets]
    headers = []
    for key, label in columns:
        current = "asc" if sort == key else "desc" if sort == f"-{key}" else ""
        # First click: the newest run, the most steps, the longest run, the highest accuracy, the lowest
        # loss, A to Z; a second click reverses it.
        first = f"-{key}" if key in ("steps", "duration", "tokens_per_s") or key.startswith("acc:") else key
        target = (key if current == "desc" else f"-{key}") if current else first
        link = f"?{query}&sort={target}" if query else f"?sort={target}"
        headers.append({"label": label, "url": link, "current": current, "key": key})
    return headers


def run_row(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One history row; polled while the run is active."""
    run = get_object_or_404(Run.objects.select_related("dataset"), pk=pk)
    eval_sets = runtable.eval_columns()
    runtable.attach_accuracies([run], eval_sets)
    response = TemplateResponse(request, "runs/run_list.html#run-row", {"run": run, "eval_sets": eval_sets})
    return stop_when_done(response.render(), run)


@require_http_methods(["GET", "POST"])
def base_model_list(request: HtmxHttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "runs/basemodel_list.html", {"models": catalog()})


def run_launch(request: HtmxHttpRequest) -> HttpResponse:
    require(request.user, Action.CREATE)
    if request.method == "POST":
        form = RunLaunchForm(request.POST)
        if form.is_valid():
            run = launch_run(form.values, request.user)
            notify_queued(request, run)
            return redirect("run-detail", pk=run.pk)
        return TemplateResponse(request, "runs/run_launch.html", {"form": form}, status=400)
    initial = {k: v for k, v in request.GET.items()}
    return TemplateResponse(request, "runs/run_launch.html", {"form": RunLaunchForm(initial=initial)})


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
    values = {k: v for k, v in values.items() if v is not None}  # no parent: the field stays empty
    for name, weight in (values.pop("rewards", None) or {}).items():
        values[f"reward_{name}"] = weight  # the form's one input per reward function
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
        "config": run.config_for_people(),
        "panels": metric_panels([run]),
        "logs": logs,
        "last_seq": logs[-1].seq if logs else -1,
        "poll_logs": run.is_active,
        **_artifact_groups(run),
        # Shown elsewhere on the page: samples in their cards, devices in the configuration ("Devices").
        "summary_groups": summary_groups(
            run.summary,
            # GRPO's own echo of its method and settings: the configuration shows both.
            {"samples", "grpo_samples", "grpo_samples_step", "devices", "method", "settings", *ESTIMATE_KEYS},
        ),
        "evaluations": run.evaluations.select_related("eval_set").order_by("-created_at")[:20],
        "eval_sets": EvalSet.objects.order_by("name"),
        "versions": run.model_versions.select_related("model"),
        "smaller": _smaller_retry(run) if run.killed_by_system else None,
        "progress": run.progress(),
        "describe_form": RunDescribeForm(initial={"name": run.name, "notes": run.notes}),
        "registered_names": pickers.registered_names() if run.status == "completed" else [],
    }


def run_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(Run.objects.select_related("dataset", "created_by", "prompt_eval_set"), pk=pk)
    context = _detail_context(run)
    fragment = request.GET.get("fragment")
    if request.htmx and fragment in ("status", "chart", "grpo-samples"):
        response = TemplateResponse(request, f"runs/run_detail.html#{fragment}", context).render()
        if fragment == "status" and not run.is_active:
            response["HX-Refresh"] = "true"  # show the summary, artifacts and final chart
        return stop_when_done(response, run)
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
def run_describe(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Name a run and edit its notes; htmx swaps the card in place, errors inline (400)."""
    run = get_object_or_404(Run, pk=pk)
    require(request.user, Action.CHANGE, run)
    form = RunDescribeForm(request.POST)
    if form.is_valid():
        run.describe(name=form.cleaned_data["name"], notes=form.cleaned_data["notes"])
        messages.info(request, f"Run {pk}: name and notes saved.")
        if request.htmx:
            response = HttpResponse(status=204)
            response["HX-Refresh"] = "true"  # the title shows the name too
            return response
        return redirect("run-detail", pk=pk)
    context = {"run": run, "describe_form": form}
    return TemplateResponse(request, "runs/run_detail.html#describe", context, status=400)


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


@require_http_methods(["GET", "POST"])
def run_retry(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Queue a copy of the run. While it is still active that makes two at once: ask first.

    GET (and a POST without `confirm`, for an active run) answers the confirmation page.
    """
    run = get_object_or_404(Run.objects.select_related("dataset"), pk=pk)
    require(request.user, Action.CHANGE, run)
    if request.method == "GET" or (run.is_active and request.POST.get("confirm") != "yes"):
        return TemplateResponse(request, "runs/run_confirm_retry.html", {"run": run})
    try:
        validate_launch({"dataset": run.dataset.key, **run.config()})
        new = retry_run(run, request.user)
    except LaunchInvalid as exc:
        messages.error(request, f"Cannot retry: {exc}")
        return redirect("run-detail", pk=pk)
    notify_queued(request, new)
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
            values = [r.dataset.key if name == "dataset" else r.display_value(name) for r in runs]
            rows.append({"name": name, "values": values, "differs": len({str(v) for v in values}) > 1})
        for name in (
            "steps_done",
            "final_train_loss",
            "best_eval_loss",
            "final_reward_mean",
            "tokens_per_s",
            "mfu",
            "peak_rss_mb",
        ):
            values = [r.summary.get(name) for r in runs]
            rows.append({"name": name, "values": values, "differs": len({str(v) for v in values}) > 1, "result": True})
    context = {
        "runs": runs,
        "error": error,
        "rows": rows,
        "panels": metric_panels(runs) if runs else [],
        "recent": Run.objects.select_related("dataset").order_by("-created_at", "-id")[:30],
        "picked": ids,
    }
    return TemplateResponse(request, "runs/run_compare.html", context)
