"""Preference pair pages: list, detail, delete, and the compare page's "A/B is better" buttons (HTMX partials)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework.exceptions import ValidationError

from traces.filters import PairFilter
from traces.models import PairInUse, PreferencePair, Trace
from traces.preferences.api import evaluations_from
from traces.preferences.forms import PreferenceForm
from traces.preferences.generating import GenerationInvalid, pairs_from_evaluations
from traces.validation import PairInvalid
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.pagination import InvalidPage, keyset_page, parse_limit
from tunixrt.roles import Action, require

LIST_COLUMNS = ("id", "created_at", "prompt", "note", "source", "created_by")


def pair_list(request: HtmxHttpRequest) -> TemplateResponse:
    queryset = PreferencePair.objects.select_related("created_by").only(*LIST_COLUMNS, "created_by__username")
    filterset = PairFilter(request.GET or None, queryset=queryset)
    page_error = ""
    rows: list[PreferencePair] = []
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
    template = "traces/preferencepair_list.html"
    # htmx asks for the whole page when it restores history it has not cached.
    if request.htmx and not request.htmx.history_restore_request:
        template += "#pair-rows" if request.GET.get("cursor") else "#pair-table"
    response = TemplateResponse(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def pair_detail(request: HtmxHttpRequest, pk: int) -> TemplateResponse:
    pair = get_object_or_404(
        PreferencePair.objects.select_related(
            "created_by", "chosen_evaluation__run", "rejected_evaluation__run", "eval_item"
        ),
        pk=pk,
    )
    context = {
        "pair": pair,
        "dataset_keys": pair.dataset_keys(),
        "meta_json": json.dumps(pair.meta, indent=2, ensure_ascii=False) if pair.meta else "",
    }
    return TemplateResponse(request, "traces/preferencepair_detail.html", context)


@require_http_methods(["GET", "POST"])
def pair_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    pair = get_object_or_404(PreferencePair, pk=pk)
    require(request.user, Action.CHANGE, pair)
    keys = pair.dataset_keys()
    if request.method == "POST" and not keys:
        try:
            pair.delete()
        except PairInUse as exc:  # a dataset took it since the check above
            keys = exc.keys
        else:
            messages.success(request, f"Pair {pk} was deleted.")
            return redirect("pair-list")
    return TemplateResponse(
        request,
        "traces/preferencepair_confirm_delete.html",
        {"pair": pair, "dataset_keys": keys},
        status=409 if keys and request.method == "POST" else 200,
    )


@require_POST
def pair_from_compare(request: HtmxHttpRequest) -> HttpResponse:
    """The compare page's "A is better" / "B is better": a pair of the two traces' answers."""
    require(request.user, Action.CREATE)
    form = PreferenceForm(request.POST)
    context: dict[str, Any] = {}
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        traces = {t.pk: t for t in Trace.objects.filter(pk__in=[data["base"], data["other"]])}
        missing = [name for name in ("base", "other") if data[name] not in traces]
        for name in missing:
            form.add_error(name, f"No trace with id {data[name]}.")
        if not missing:
            base, other = traces[data["base"]], traces[data["other"]]
            chosen, rejected = (base, other) if data["better"] == "base" else (other, base)
            try:
                result = PreferencePair.objects.from_traces(chosen, rejected, note=data["note"], user=request.user)
            except PairInvalid as exc:
                context["pair_errors"] = [" ".join(msgs) for msgs in exc.errors.values()]
            else:
                context.update(saved=result, chosen=chosen, rejected=rejected)
                status = 201 if result.created else 200
    context["pair_errors"] = context.get("pair_errors", []) + [
        f"{form.fields[name].label or name}: {' '.join(str(m) for m in msgs)}" for name, msgs in form.errors.items()
    ]
    if request.htmx:
        return TemplateResponse(request, "traces/trace_compare.html#preference-result", context, status=status)
    if "saved" in context:
        verb = "Recorded" if context["saved"].created else "Already recorded as"
        messages.success(request, f"{verb} preference pair {context['saved'].id}.")
    for error in context["pair_errors"]:
        messages.error(request, error)
    back = urlencode({"base": request.POST.get("base", ""), "other": request.POST.get("other", "")})
    return redirect(f"{reverse('trace-compare')}?{back}")


@require_POST
def pairs_from_evaluations_page(request: HtmxHttpRequest) -> HttpResponse:
    """The evaluation compare page's "Make preference pairs": the right answers over the wrong ones."""
    require(request.user, Action.CREATE)
    context: dict[str, Any] = {}
    status = 400
    try:
        first, second = evaluations_from(request.POST)
        context["generated"] = pairs_from_evaluations(first, second, request.user)
    except ValidationError as exc:
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        context["errors"] = [f"{k}: {' '.join(str(m) for m in v)}" for k, v in details.items()]
    except GenerationInvalid as exc:
        context["errors"] = [f"{k}: {' '.join(v)}" for k, v in exc.errors.items()]
    else:
        status = 201 if context["generated"].created else 200
    if request.htmx:
        return TemplateResponse(request, "traces/preferencepair_generated.html", context, status=status)
    if "generated" in context:
        g = context["generated"]
        messages.success(
            request, f"{g.created} new preference pairs, {g.duplicates} already stored, {g.skipped} skipped."
        )
    for error in context.get("errors", []):
        messages.error(request, error)
    return redirect(f"{reverse('pair-list')}?source=evaluation")
