"""Dashboard, health and account pages."""

from __future__ import annotations

import math
from typing import Any

from axes.helpers import get_cool_off
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from runs.models import Evaluation, RegisteredModel, Run
from traces.models import Dataset, Trace, TraceScore
from tunixrt.errors import is_api
from tunixrt.health import health_report, status_summary
from tunixrt.models import ApiToken
from tunixrt.throttling import TokenIssueThrottle

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
    context: dict[str, Any] = {
        "trace_count": trace_count,
        "trace_count_estimated": estimated,
        "scored_count": TraceScore.objects.count() if not estimated else None,
        "recent": Trace.objects.newest_first().only("id", "prompt", "created_at", "source", "step_count")[:5],
        "dataset_count": Dataset.objects.count(),
        "run_count": Run.objects.count(),
        "recent_runs": Run.objects.select_related("dataset").order_by("-created_at", "-id")[:5],
        "model_count": RegisteredModel.objects.count(),
        "evaluation_count": Evaluation.objects.filter(status="completed").count(),
        "latest_results": Evaluation.objects.filter(status="completed")
        .select_related("run", "eval_set")
        .order_by("-finished_at", "-id")[:5],
    }
    steps = first_steps(context)
    context["next_steps"] = steps
    context["all_steps_done"] = all(step["done"] for step in steps)
    return TemplateResponse(request, "tunixrt/dashboard.html", context)


def first_steps(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """The loop a new team walks through, each step done or not, and the first one not done marked next."""
    steps = [
        {"title": "Import traces", "done": counts["trace_count"] > 0, "url": "trace-upload",
         "hint": "Upload JSON or JSONL, or send traces to the API or import_traces."},
        {"title": "Build a dataset", "done": counts["dataset_count"] > 0, "url": "dataset-build",
         "hint": "Freeze filtered traces into an immutable name@vN with a validation split."},
        {"title": "Launch a run", "done": counts["run_count"] > 0, "url": "run-launch",
         "hint": "Fine-tune a base model on it with Tunix (full or LoRA) and watch it live."},
        {"title": "Evaluate", "done": counts["evaluation_count"] > 0, "url": "evaluation-home",
         "hint": "Score the trained model on a held-out eval set and compare it on the leaderboard."},
    ]
    for step in steps:
        if not step["done"]:
            step["next"] = True
            break
    return steps


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
class ApiRoot(APIView):
    """`/api/`: the endpoints, by name, as links (what DRF's DefaultRouter root answers).

    It also names the first crumb of the browsable API's breadcrumbs.
    """

    view_name = "API root"
    endpoints = {
        "traces": "api-trace-list",
        "preference-pairs": "api-pair-list",
        "datasets": "api-dataset-list",
        "runs": "api-run-list",
        "eval-sets": "api-evalset-list",
        "evaluations": "api-evaluation-list",
        "evaluations/compare": "api-evaluation-compare",
        "leaderboard": "api-leaderboard",
        "regression/baselines": "api-baseline-list",
        "models": "api-model-list",
        "health": "api-health",
        "schema": "api-schema",
        "docs": "api-docs",
    }

    def get_view_name(self) -> str:
        return self.view_name

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response({name: reverse(url_name, request=request) for name, url_name in self.endpoints.items()})


class ApiNotFound(APIView):
    """Any /api/ URL that names no endpoint: a JSON 404 like every other API error (never an HTML page).

    It defines no handlers, so every method lands in `http_method_not_allowed`, after
    authentication: anonymous callers get the usual 403.
    """

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        raise NotFound(f"No API endpoint at {request.path}. See /api/docs/.")


@never_cache
@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    """The user's API token; POST issues a new one (revoking the old) and shows it this once.

    Only a digest is stored, so the plaintext is in this one response and nowhere else
    (not in the session or a message cookie): the page answers the POST itself instead of
    redirecting, and nothing caches it.
    """
    user = request.user
    assert user.is_authenticated  # the login middleware guarantees it
    context: dict[str, Any] = {}
    status = 200
    if request.method == "POST":
        throttle = TokenIssueThrottle()
        if throttle.allow_request(request, None):
            context["new_key"] = ApiToken.objects.issue(user)
        else:
            wait = throttle.wait()
            context["throttled_minutes"] = math.ceil(wait / 60)
            status = 429
    context["token"] = ApiToken.objects.filter(user=user).first()
    response = TemplateResponse(request, "tunixrt/api_token.html", context, status=status)
    if status == 429:
        response["Retry-After"] = str(wait)
    return response


def login_locked_out(
    request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """django-axes' answer to a login refused during a lockout (AXES_LOCKOUT_CALLABLE): 429 and a Retry-After.

    Browsers get the login form again with the reason (on the admin's and the browsable API's
    login too, so every form that checks a password says the same); the API, JSON.
    """
    cool_off = get_cool_off(request)
    # A failed attempt during a lockout restarts the cool-off (axes' default), so it is whole now.
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    minutes = max(1, math.ceil(seconds / 60))
    message = (
        "Too many failed logins for this account or from this address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    if is_api(request) or request.headers.get("Accept", "").startswith("application/json"):
        locked: HttpResponse = JsonResponse({"detail": message}, status=429)
    else:
        username = (credentials or {}).get("username") or request.POST.get("username", "")
        form = AuthenticationForm(request, initial={"username": username})
        next_url = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
        if not next_url and request.path_info.startswith("/admin/"):
            next_url = "/admin/"
        context = {"form": form, "lockout_message": message, "next": next_url}
        locked = TemplateResponse(request, "registration/login.html", context, status=429)
        locked.render()
    locked["Retry-After"] = str(seconds or 60)
    return locked
