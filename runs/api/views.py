"""The run API: launch, list, detail, cancel, retry, logs, metrics, artifacts, delete; the base-model catalog."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from runs.api.serializers import (
    BaseModelSerializer,
    RunDescribeSerializer,
    RunDetailSerializer,
    RunLaunchSerializer,
    RunListSerializer,
    RunLogPageSerializer,
    RunLogSerializer,
)
from runs.basemodels import catalog
from runs.evaluation.api import EvaluateRequest, EvaluationSerializer, evaluate_run
from runs.filters import RunFilter
from runs.launching import artifact_path, delete_run, launch_run, list_artifacts, retry_run
from runs.models import Run, RunLog
from runs.validation import LaunchInvalid, validate_launch
from tunixrt.jobs import JobNotActive
from tunixrt.pagination import KeysetPagination
from tunixrt.roles import Action

LOG_PAGE = 1000


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: ["A whole number is required."]}) from None
    if not low <= value <= high:
        raise ValidationError({name: [f"Ensure this value is between {low:,} and {high:,}."]})
    return value


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Run]):
    """Tunix fine-tuning runs."""

    queryset = Run.objects.all()
    filterset_class = RunFilter
    pagination_class = KeysetPagination
    role_actions = {
        "create": Action.CREATE,
        "evaluate": Action.CREATE,
        "cancel": Action.CHANGE,
        "retry": Action.CHANGE,
        "destroy": Action.CHANGE,
        "partial_update": Action.CHANGE,
    }

    def get_queryset(self) -> QuerySet[Run]:
        qs = Run.objects.select_related("dataset", "created_by")
        if self.action == "list":
            qs = qs.defer("summary", "stdout_tail", "stderr_tail", "error")
        return qs

    def get_serializer_class(self) -> type[Any]:
        if self.action == "list":
            return RunListSerializer
        if self.action == "create":
            return RunLaunchSerializer
        return RunDetailSerializer

    @extend_schema(
        request=RunLaunchSerializer,
        responses={201: RunDetailSerializer},
        summary="Launch a run (queued for a worker)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        try:
            run = launch_run(validate_launch(request.data), request.user)
        except LaunchInvalid as exc:
            raise ValidationError(exc.errors) from None
        return Response(RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=RunDescribeSerializer, responses={200: RunDetailSerializer}, summary="Name a run or edit its notes"
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        body = RunDescribeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run.describe(**body.validated_data)
        return Response(RunDetailSerializer(run).data)

    @extend_schema(request=None, responses={200: RunDetailSerializer, 409: dict}, summary="Cancel a run")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        try:
            run.cancel()
        except JobNotActive as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(RunDetailSerializer(run).data)

    @extend_schema(
        request=None, responses={201: RunDetailSerializer}, summary="Retry: a new run, same config"
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        try:
            # The dataset may have been rebuilt or the base model removed since.
            validate_launch({"dataset": run.dataset.key, **run.config()})
            new = retry_run(run, request.user)
        except LaunchInvalid as exc:
            raise ValidationError(exc.errors) from None
        return Response(RunDetailSerializer(new).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=EvaluateRequest,
        responses={201: EvaluationSerializer, 409: dict},
        summary="Evaluate the run's model (or its base, baseline=true) on an eval set",
    )
    @action(detail=True, methods=["post"])
    def evaluate(self, request: Request, pk: str | None = None) -> Response:
        return evaluate_run(request, self.get_object())

    @extend_schema(responses={204: None, 409: dict}, summary="Delete a finished run and its files")
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        try:
            delete_run(run)
        except JobNotActive as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since_seq", {"type": "integer", "minimum": -1}, description="only lines with a larger sequence number"
            ),
            OpenApiParameter(
                "limit", {"type": "integer", "minimum": 1, "maximum": LOG_PAGE}, description="at most this many lines"
            ),
        ],
        responses=RunLogPageSerializer,
        summary="Log lines after a sequence number",
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def logs(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        since = _int_param(request, "since_seq", -1, -1, 2**31)
        limit = _int_param(request, "limit", LOG_PAGE, 1, LOG_PAGE)
        lines = list(RunLog.objects.filter(run=run, seq__gt=since).order_by("seq")[:limit])
        return Response(
            {
                "status": run.status,
                "last_seq": lines[-1].seq if lines else since,
                "lines": RunLogSerializer(lines, many=True).data,
            }
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="metric name; omit for every series"),
            OpenApiParameter(
                "max_points",
                {"type": "integer", "minimum": 2, "maximum": 100_000},
                description="downsample each series to about this many points (default 500)",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT},
        summary="Metric series (train_loss, eval_loss, perplexity, grad_norm, learning_rate, tokens_per_s)",
        filters=False,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def metrics(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        max_points = _int_param(request, "max_points", 500, 2, 100_000)
        name = request.query_params.get("name")
        names = [name] if name else sorted(set(run.metrics.values_list("name", flat=True).distinct()))
        series = {n: [{"step": s, "value": v} for s, v in run.metric_series(n, max_points)] for n in names}
        return Response({"run": run.pk, "series": series})

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Files of the run", filters=False)
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def artifacts(self, request: Request, pk: str | None = None) -> Response:
        run = self.get_object()
        return Response({"run": run.pk, "files": list_artifacts(run)})

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        summary="Download a file",
        operation_id="runs_artifact_download",
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"artifacts/(?P<path>.+)",
        filter_backends=[],
        pagination_class=None,
    )
    def artifact(self, request: Request, pk: str | None = None, path: str = "") -> FileResponse:
        run = self.get_object()
        file = artifact_path(run, path)
        if file is None:
            raise Http404
        return FileResponse(file.open("rb"), as_attachment=True, filename=file.name)


@extend_schema(
    responses=BaseModelSerializer(many=True),
    summary="Base-model folders under MODELS_DIR: family, size, tokenizer, and whether they can be trained",
)
@api_view(["GET"])
def base_model_list(request: Request) -> Response:
    return Response(BaseModelSerializer([m.as_dict() for m in catalog()], many=True).data)
