"""Model registry pages: the registered models, promoting a run, downloading a version."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from runs.evaluation.running import EvaluationConflict
from runs.models import ModelVersion, RegisteredModel, Run
from runs.registry.promotion import archive_path, promote
from tunixrt.middleware import HtmxHttpRequest
from tunixrt.roles import Action, require


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
