"""Trace pages: list, detail, upload, compare, score, delete (HTMX partials)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods, require_POST

from traces.filters import TraceFilter
from traces.forms import CompareForm, TraceFileForm, TracePasteForm
from traces.importing import import_traces
from traces.models import Trace
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.pagination import InvalidPage, keyset_page, parse_limit

EXAMPLE_TRACE = """{
  "trace_version": "1.0",
  "prompt": "Convert 68°F to Celsius",
  "steps": [
    {"i": 0, "type": "parse", "content": "Parse the task: 68°F to °C"},
    {"i": 1, "type": "formula", "content": "°C = (°F - 32) × 5/9"},
    {"i": 2, "type": "compute", "content": "(68 - 32) × 5/9 = 20"}
  ],
  "final_answer": "20°C",
  "meta": {"source": "example", "tags": ["temperature"]}
}"""

LIST_COLUMNS = ("id", "created_at", "prompt", "final_answer", "source", "tags", "step_count", "char_count")


def trace_list(request: HtmxHttpRequest) -> TemplateResponse:
    filterset = TraceFilter(request.GET or None, queryset=Trace.objects.only(*LIST_COLUMNS))
    page_error = ""
    rows: list[Trace] = []
    next_cursor = None
    try:
        limit = parse_limit(request.GET.get("limit"), default=50)
        rows, next_cursor = keyset_page(filterset.qs, request.GET.get("cursor"), limit)
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
    template = "traces/trace_list.html"
    if request.htmx:
        template += "#trace-rows" if request.GET.get("cursor") else "#trace-table"
    return TemplateResponse(request, template, context)


def trace_detail(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    trace = get_object_or_404(Trace, pk=pk)
    context = {
        "trace": trace,
        "scores": trace.scores.order_by("criteria"),
        "meta_json": json.dumps(trace.meta, indent=2, ensure_ascii=False),
    }
    return TemplateResponse(request, "traces/trace_detail.html", context)


@require_POST
def trace_score(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    trace = get_object_or_404(Trace, pk=pk)
    trace.score()
    if request.htmx:
        return TemplateResponse(
            request,
            "traces/trace_detail.html#scores",
            {"trace": trace, "scores": trace.scores.order_by("criteria")},
        )
    return redirect("trace-detail", pk=pk)


@require_http_methods(["GET", "POST"])
def trace_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    trace = get_object_or_404(Trace, pk=pk)
    if request.method == "POST":
        trace.delete()
        messages.success(request, f"Trace {pk} was deleted.")
        return redirect("trace-list")
    return TemplateResponse(request, "traces/trace_confirm_delete.html", {"trace": trace})


@require_http_methods(["GET", "POST"])
def trace_upload(request: HtmxHttpRequest) -> TemplateResponse:
    paste_form = TracePasteForm(initial={"payload": EXAMPLE_TRACE} if request.GET.get("example") else None)
    context: dict[str, Any] = {"paste_form": paste_form, "file_form": TraceFileForm()}
    if request.method == "GET":
        template = "traces/trace_upload.html"
        if request.htmx and request.GET.get("example"):
            template += "#paste-field"
        return TemplateResponse(request, template, context)

    paste_form = TracePasteForm(request.POST)
    context["paste_form"] = paste_form
    if paste_form.is_valid():
        results = Trace.objects.ingest(paste_form.cleaned_data["payload"], request.user)
        context["results"] = results
    template = "traces/trace_upload.html"
    if request.htmx:
        template += "#paste-result"
    return TemplateResponse(request, template, context, status=200 if paste_form.is_valid() else 400)


@require_POST
def trace_upload_file(request: HtmxHttpRequest) -> TemplateResponse:
    form = TraceFileForm(request.POST, request.FILES)
    context: dict[str, Any] = {"paste_form": TracePasteForm(), "file_form": form}
    if form.is_valid():
        upload = form.cleaned_data["file"]
        context["report"] = import_traces([(upload.name, upload)], source=form.cleaned_data["source"])
    template = "traces/trace_upload.html"
    if request.htmx:
        template += "#file-result"
    return TemplateResponse(request, template, context, status=200 if form.is_valid() else 400)


def trace_compare(request: HtmxHttpRequest) -> TemplateResponse:
    data = request.GET.copy()
    picked = data.getlist("id")
    if len(picked) == 2 and "base" not in data:
        data["base"], data["other"] = picked
    form = CompareForm(data if ("base" in data or "other" in data) else None)
    context: dict[str, Any] = {"form": form}
    if form.is_valid():
        pair = []
        for name in ("base", "other"):
            trace = Trace.objects.filter(pk=form.cleaned_data[name]).first()
            if trace is None:
                form.add_error(name, f"No trace with id {form.cleaned_data[name]}.")
            else:
                pair.append(trace)
        if len(pair) == 2:
            context["pair"] = [(t, t.ensure_scores()) for t in pair]
    return TemplateResponse(request, "traces/trace_compare.html", context)
