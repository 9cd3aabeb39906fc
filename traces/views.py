"""Trace pages: list, detail, upload, compare, score, review, bulk actions, delete (HTMX partials)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from traces import exploring, searchindex
from traces.filters import TraceFilter
from traces.forms import CompareForm, TraceFileForm, TracePasteForm
from traces.importing import import_traces
from traces.labelling import (
    REVIEW_FIELDS,
    ReviewInvalid,
    bulk_delete,
    bulk_label,
    bulk_rate,
    current_rating,
    facets,
    parse_bulk,
    parse_review,
    review_trace,
    split_labels,
)
from traces.models import Dataset, Trace, TraceInUse
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.pagination import InvalidPage, keyset_page, parse_limit, parse_order
from tunixrt.roles import Action, require

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
    filterset = TraceFilter(request.GET or None, queryset=Trace.objects.with_review().only(*LIST_COLUMNS))
    page_error = ""
    rows: list[Trace] = []
    next_cursor = None
    order = exploring.ORDERS["newest"]
    try:
        order = parse_order(request.GET.get("sort"), exploring.ORDERS)
        limit = parse_limit(request.GET.get("limit"), default=50)
        rows, next_cursor = keyset_page(filterset.qs, request.GET.get("cursor"), limit, order)
    except InvalidPage as exc:
        page_error = f"{exc.field}: {exc}"
    searching = bool(request.GET.get("q", "").strip()) and not request.GET.get("cursor")
    # Bulk captures become searchable a few seconds later (traces.searchindex): say so.
    cap = searchindex.SEARCH_BACKLOG_CAP
    backlog = searchindex.backlog(cap) if searching else 0
    context = {
        "filter": filterset,
        "rows": rows,
        "next_cursor": next_cursor,
        "query": _list_query(request, "cursor"),
        "filters_query": _list_query(request, "cursor", "sort", "limit"),
        "orders": exploring.ORDERS.values(),
        "order": order,
        "page_error": page_error,
        "search_backlog": backlog,
        "search_backlog_label": searchindex.describe_backlog(backlog, cap),
    }
    template = "traces/trace_list.html"
    if not request.htmx or request.htmx.history_restore_request:
        context["facets"] = facets()  # only the full page shows them
    # htmx asks for the whole page when it restores history it has not cached.
    if request.htmx and not request.htmx.history_restore_request:
        template += "#trace-rows" if request.GET.get("cursor") else "#trace-table"
    response = TemplateResponse(request, template, context)
    # The same URL answers a page or a fragment: caches must not mix them up
    # (the browser's back button would show a bare table).
    patch_vary_headers(response, ("HX-Request",))
    return response


def _list_query(request: HtmxHttpRequest, *drop: str) -> str:
    """The list's query string without `drop` and without empty fields (a submitted form sends every
    field; links carry only the ones set)."""
    params = request.GET.copy()
    for name in [n for n in params if n in drop or not params.get(n)]:
        params.pop(name)
    return params.urlencode()


def trace_summary(request: HtmxHttpRequest) -> TemplateResponse:
    """The list's count and source/tag facets for the same filters (loaded after the rows)."""
    filterset = TraceFilter(request.GET, queryset=Trace.objects.all())
    context: dict[str, Any] = {"filters_query": _list_query(request, "cursor", "sort", "limit")}
    if filterset.is_valid():
        matching = exploring.count_matching(filterset.qs)
        context.update(matching=matching, summary=exploring.facets(filterset.qs, matching))
    return TemplateResponse(request, "traces/_summary.html", context)


def review_context(trace: Trace, user: Any) -> dict[str, Any]:
    reviews = list(trace.reviews.select_related("user").order_by("-updated_at", "-id"))
    mine = next((r for r in reviews if r.user_id == user.pk), None)
    return {
        "trace": trace,
        "rating": current_rating(trace),
        "reviews": reviews,
        "my_review": mine,
        "labels": list(trace.labels.select_related("created_by").order_by("label")),
    }


def trace_detail(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    trace = get_object_or_404(Trace, pk=pk)
    context = {
        **review_context(trace, request.user),
        "scores": trace.scores.order_by("criteria"),
        "meta_json": json.dumps(trace.meta, indent=2, ensure_ascii=False),
        **_list_position(request, trace),
    }
    return TemplateResponse(request, "traces/trace_detail.html", context)


def _list_position(request: HtmxHttpRequest, trace: Trace) -> dict[str, Any]:
    """Previous / next in the list the page was opened from (its filters and order ride in the query)."""
    filterset = TraceFilter(request.GET, queryset=Trace.objects.all())
    order = exploring.ORDERS.get(request.GET.get("sort", ""), exploring.ORDERS["newest"])
    if not filterset.is_valid():
        filterset = TraceFilter(None, queryset=Trace.objects.all())
    previous, following = exploring.neighbours(filterset.qs, trace, order)
    return {"list_query": _list_query(request, "cursor"), "previous_id": previous, "next_id": following}


@require_POST
def trace_review(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The detail page's review form: your rating and comment, labels to add (comma-separated) or one to remove."""
    require(request.user, Action.CREATE)
    trace = get_object_or_404(Trace, pk=pk)
    data: dict[str, Any] = {k: request.POST[k] for k in REVIEW_FIELDS if k in request.POST}
    for name in ("labels", "remove_labels"):
        if name in data:
            data[name] = split_labels(data[name])
    errors: dict[str, list[str]] = {}
    try:
        review_trace(trace, request.user, parse_review(data))
    except ReviewInvalid as exc:
        errors = exc.errors
    if request.htmx:
        context = {**review_context(trace, request.user), "review_errors": errors}
        return TemplateResponse(request, "traces/trace_detail.html#review", context, status=400 if errors else 200)
    for field, msgs in errors.items():
        messages.error(request, f"{field}: {' '.join(msgs)}")
    return redirect("trace-detail", pk=pk)


@require_POST
def trace_bulk(request: HtmxHttpRequest) -> HttpResponse:
    """The list page's bulk actions on the ticked traces: label, rate, delete."""
    require(request.user, Action.CREATE)
    data: dict[str, Any] = {"action": request.POST.get("action", ""), "ids": request.POST.getlist("id")}
    if data["action"] == "label":
        data["labels"] = split_labels(request.POST.get("labels", ""))
    elif data["action"] in ("good", "bad", "unrate"):
        data["rating"] = "" if data["action"] == "unrate" else data["action"]
        data["action"] = "rate"
    try:
        bulk = parse_bulk(data)
    except ReviewInvalid as exc:
        text = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.errors.items())
        if request.htmx:
            return TemplateResponse(request, "traces/trace_list.html#bulk-result", {"bulk_error": text}, status=400)
        messages.error(request, text)
        return redirect("trace-list")
    n = len(bulk.ids)
    if bulk.action == "label":
        bulk_label(bulk.ids, bulk.labels, request.user)
        messages.success(request, f"Labelled {n} trace{pluralize(n)} {', '.join(bulk.labels)}.")
    elif bulk.action == "rate":
        bulk_rate(bulk.ids, bulk.rating, request.user)
        messages.success(request, f"Rated {n} trace{pluralize(n)} {bulk.rating or 'unrated'}.")
    else:
        result = bulk_delete(bulk.ids, request.user)
        if result.deleted:
            deleted = len(result.deleted)
            messages.success(request, f"Deleted {deleted} trace{pluralize(deleted)}.")
        for refused in result.refused:
            messages.error(request, f"Trace {refused['id']} was not deleted: {refused['reason']}")
    if request.htmx:
        # The rows, their chips and the messages all change: reload the list as it is (filters kept).
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    return redirect("trace-list")


@require_POST
def trace_score(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require(request.user, Action.CREATE)
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
    require(request.user, Action.CHANGE, trace)
    keys = Dataset.objects.keys_containing([trace.pk])
    if request.method == "POST" and not keys:
        try:
            trace.delete()
        except TraceInUse as exc:  # a dataset took it since the check above
            keys = exc.keys
        else:
            messages.success(request, f"Trace {pk} was deleted.")
            return redirect("trace-list")
    return TemplateResponse(
        request,
        "traces/trace_confirm_delete.html",
        {"trace": trace, "dataset_keys": keys},
        status=409 if keys and request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
def trace_upload(request: HtmxHttpRequest) -> TemplateResponse:
    require(request.user, Action.CREATE)
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
    require(request.user, Action.CREATE)
    form = TraceFileForm(request.POST, request.FILES)
    context: dict[str, Any] = {"paste_form": TracePasteForm(), "file_form": form}
    if form.is_valid():
        upload = form.cleaned_data["file"]
        context["report"] = import_traces(
            [(upload.name, upload)], source=form.cleaned_data["source"], user=request.user
        )
    template = "traces/trace_upload.html"
    if request.htmx:
        template += "#file-result"
    return TemplateResponse(request, template, context, status=200 if form.is_valid() else 400)


def recent_choices(limit: int = 100) -> list[tuple[int, str]]:
    """The newest traces as (id, "#id prompt…") for the compare page's pickers."""
    rows = Trace.objects.newest_first().only("id", "prompt")[:limit]
    return [(t.pk, f"#{t.pk} {t.prompt[:90]}") for t in rows]


def trace_compare(request: HtmxHttpRequest) -> TemplateResponse:
    data = request.GET.copy()
    picked = data.getlist("id")
    if len(picked) == 2 and "base" not in data:
        data["base"], data["other"] = picked
    # "Compare…" on a trace opens with only its id: a form to finish, not one that already failed.
    if "base" in data and "other" in data:
        form = CompareForm(data)
    else:
        form = CompareForm(initial={k: data[k] for k in ("base", "other") if k in data})
    context: dict[str, Any] = {"form": form, "trace_choices": recent_choices()}
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
            context["same_prompt"] = pair[0].prompt.strip() == pair[1].prompt.strip() and pair[0].pk != pair[1].pk
    return TemplateResponse(request, "traces/trace_compare.html", context)
