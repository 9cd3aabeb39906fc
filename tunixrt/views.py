"""Dashboard, health and account pages."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from runs.models import Evaluation, RegisteredModel, Run
from traces.models import Dataset, Trace, TraceScore
from tunixrt.health import health_report, status_summary

ESTIMATE_ABOVE = 100_000


def fast_count(model: Any) -> tuple[int, bool]:
    """Row count; on PostgreSQL large tables use the planner's estimate instead of COUNT(*)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [model._meta.db_table],
            )
            row = cur.fetchone()
        if row and row[0] > ESTIMATE_ABOVE:
            return int(row[0]), True
    return model.objects.count(), False


def dashboard(request: HttpRequest) -> TemplateResponse:
    trace_count, estimated = fast_count(Trace)
    context = {
        "trace_count": trace_count,
        "trace_count_estimated": estimated,
        "scored_count": TraceScore.objects.count() if not estimated else None,
        "recent": Trace.objects.newest_first().only("id", "prompt", "created_at", "source", "step_count")[:5],
        "dataset_count": Dataset.objects.count(),
        "run_count": Run.objects.count(),
        "recent_runs": Run.objects.select_related("dataset").order_by("-created_at", "-id")[:5],
        "model_count": RegisteredModel.objects.count(),
        "evaluation_count": Evaluation.objects.filter(status="completed").count(),
    }
    return TemplateResponse(request, "tunixrt/dashboard.html", context)


def health_cards(request: HttpRequest) -> TemplateResponse:
    """The dashboard's health cards (loaded and refreshed by htmx)."""
    return TemplateResponse(request, "tunixrt/dashboard.html#health-cards", {"health": health_report()})


class HealthView(APIView):
    """Database, broker, workers, Tunix/JAX versions and RediAI.

    While the database is down nobody can be authenticated (tokens and sessions
    live there), yet this is the endpoint that must say so: a caller whose
    credentials could not be checked for that reason gets the report reduced to
    statuses, with the 503. Callers who sent no credentials still get a 403.
    """

    database_error: BaseException | None = None  # met while authenticating the caller

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            super().initial(request, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            self.database_error = exc

    @extend_schema(responses={200: dict, 503: dict}, summary="Service health")
    def get(self, request: Request) -> Response:
        report = health_report(database_error=self.database_error)
        if self.database_error is not None:
            report = status_summary(report)
        return Response(report, status=503 if report["status"] == "down" else 200)


@extend_schema(exclude=True)
class ApiNotFound(APIView):
    """Any /api/ URL that names no endpoint: a JSON 404 like every other API error (never an HTML page).

    It defines no handlers, so every method lands in `http_method_not_allowed`, after
    authentication: anonymous callers get the usual 403.
    """

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(f"No API endpoint at {request.path}. See /api/docs/.")


@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    """Show the user's API token; POST creates or rotates it."""
    user = request.user
    assert user.is_authenticated  # the login middleware guarantees it
    if request.method == "POST":
        Token.objects.filter(user=user).delete()
        Token.objects.create(user=user)
        messages.success(request, "A new API token was created; the old one no longer works.")
        return redirect("api-token")
    token = Token.objects.filter(user=user).first()
    return TemplateResponse(request, "tunixrt/api_token.html", {"token": token})
