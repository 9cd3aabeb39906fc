"""Dataset pages: list, build (with a live preview), detail (live build status), export, delete."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from runs.training import templates
from traces.choices import DatasetStatus, ExportFormat, Split
from traces.datasets.building import (
    BuildInvalid,
    build_dataset,
    matching,
    sample_members,
    sample_pair_members,
    validate_build_spec,
)
from traces.datasets.exporting import PREFERENCE_FORMATS, check_format, check_template, export_response
from traces.datasets.forms import DatasetBuildForm, parse_trace_ids
from traces.models import Dataset, DatasetInUse
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.pagination import InvalidPage, keyset_page
from tunixrt.roles import Action, require


def dataset_list(request: HtmxHttpRequest) -> TemplateResponse:
    qs = Dataset.objects.defer("spec")
    q = request.GET.get("q", "").strip()
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(description__icontains=q))
    rows: list[Dataset] = []
    next_cursor = None
    page_error = ""
    try:
        rows, next_cursor = keyset_page(qs, request.GET.get("cursor"), 50)
    except InvalidPage as exc:
        page_error = f"{exc.field}: {exc}"
    context = {"rows": rows, "next_cursor": next_cursor, "q": q, "page_error": page_error}
    template = "traces/dataset_list.html"
    if request.htmx:
        template += "#dataset-rows" if request.GET.get("cursor") else "#dataset-table"
    return TemplateResponse(request, template, context)


@require_http_methods(["GET", "POST"])
def dataset_build(request: HtmxHttpRequest) -> HttpResponse:
    require(request.user, Action.CREATE)
    if request.method == "POST":
        form = DatasetBuildForm(request.POST)
        if form.is_valid():
            try:
                dataset = build_dataset(form.spec, request.user)
            except BuildInvalid as exc:
                for key, msgs in exc.errors.items():
                    form.add_error(key if key in form.fields else None, msgs)
            else:
                if dataset.status == DatasetStatus.READY:
                    messages.success(request, f"Built {dataset.key}.")
                elif dataset.awaiting_broker:
                    messages.warning(request, dataset.queued_notice)
                else:
                    messages.info(request, f"{dataset.key} is being built by a worker.")
                return redirect("dataset-detail", key=dataset.key)
        return TemplateResponse(request, "traces/dataset_build.html", {"form": form}, status=400)
    initial = {k: v for k, v in request.GET.items() if k in DatasetBuildForm.base_fields}
    # "New dataset from selection" on the trace list sends the ticked rows as id=…&id=….
    picked = request.GET.getlist("id")
    if picked and "trace_ids" not in initial:
        initial["trace_ids"] = ", ".join(picked)
    form = DatasetBuildForm(initial=initial)
    context = {"form": form, "preview": _preview(initial)}
    return TemplateResponse(request, "traces/dataset_build.html", context)


def _preview(params: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        k: v for k, v in params.items() if k in DatasetBuildForm.base_fields and v not in (None, "")
    }
    data["name"] = "preview"
    for field in ("trace_ids", "pair_ids"):
        if isinstance(data.get(field), str):
            ids = parse_trace_ids(data[field])
            if ids is None:
                return {"errors": {field: ["Give ids: whole numbers separated by commas or spaces."]}}
            data[field] = ids or None
    try:
        spec = validate_build_spec(data)
    except BuildInvalid as exc:
        return {"errors": {k: v for k, v in exc.errors.items() if k != "name"}}
    matches = matching(spec).count()
    return {"matches": matches, "selected": min(matches, spec.limit), "spec": spec, "what": spec.what}


def dataset_preview(request: HtmxHttpRequest) -> TemplateResponse:
    """The live "N traces match" line of the build form."""
    return TemplateResponse(
        request, "traces/dataset_build.html#preview", {"preview": _preview(request.GET.dict())}
    )


def _dataset_or_404(key: str) -> Dataset:
    try:
        return Dataset.objects.by_key(key)
    except Dataset.DoesNotExist:
        raise Http404(f"No dataset {key}.") from None


def dataset_detail(request: HtmxHttpRequest, key: str) -> HttpResponse:
    dataset = _dataset_or_404(key)
    ready = dataset.status == DatasetStatus.READY
    sample: list[Any] = []
    if ready:
        sample = sample_pair_members(dataset) if dataset.is_preference else sample_members(dataset)
    context = {
        "dataset": dataset,
        # Each kind exports in its own formats (traces.datasets.exporting.check_format).
        "formats": [(v, n) for v, n in ExportFormat.choices if (v in PREFERENCE_FORMATS) == dataset.is_preference],
        "splits": ["all", *Split.values],
        "chat_templates": [(t.name, t.label) for t in templates.TEMPLATES.values()],
        "sample": sample,
        "spec_json": json.dumps(dataset.spec, indent=2, ensure_ascii=False)[:20000],
        "runs": dataset.runs.order_by("-created_at", "-id")[:10],
    }
    if request.htmx and request.GET.get("fragment") == "status":
        response = TemplateResponse(request, "traces/dataset_detail.html#status", context)
        if not dataset.is_active:
            # Stop polling: htmx treats 286 as "done". Reload to show stats and members.
            response.status_code = 286
            response["HX-Refresh"] = "true"
        return response
    return TemplateResponse(request, "traces/dataset_detail.html", context)


def dataset_export(request: HtmxHttpRequest, key: str) -> HttpResponseBase:
    dataset = _dataset_or_404(key)
    fmt = request.GET.get("format", ExportFormat.TRACE)
    split = request.GET.get("split", "all")
    if dataset.status != DatasetStatus.READY:
        message = f"Dataset {dataset.key} is {dataset.status}, not ready."
        return HttpResponse(message, status=409, content_type="text/plain")
    if fmt not in ExportFormat.values or split not in ("all", *Split.values):
        return HttpResponse("Unknown format or split.", status=400, content_type="text/plain")
    template = request.GET.get("template") or None
    try:
        check_format(dataset, fmt)
    except ValueError as exc:
        return HttpResponse(f"format: {exc}", status=400, content_type="text/plain")
    try:
        check_template(fmt, template)
    except ValueError as exc:
        return HttpResponse(f"template: {exc}", status=400, content_type="text/plain")
    return export_response(dataset, fmt, split, template)


@require_http_methods(["GET", "POST"])
def dataset_delete(request: HtmxHttpRequest, key: str) -> HttpResponse:
    dataset = _dataset_or_404(key)
    require(request.user, Action.CHANGE, dataset)
    if request.method == "POST":
        try:
            dataset.delete()
        except DatasetInUse as exc:
            messages.error(request, str(exc))
            return redirect("dataset-detail", key=key)
        messages.success(request, f"Dataset {key} was deleted.")
        return redirect("dataset-list")
    # The runs that trained on it keep it (Dataset.delete refuses): name them before anyone tries.
    blocking = list(dataset.runs.order_by("id").only("id", "status")[:50])
    context = {"dataset": dataset, "blocking_runs": blocking, "blocking_count": dataset.runs.count() if blocking else 0}
    return TemplateResponse(request, "traces/dataset_confirm_delete.html", context)
