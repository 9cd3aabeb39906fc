"""The evaluation API: eval sets, evaluations, leaderboard, run comparison, regressions, model registry."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from runs.evalsets import EvalSetInvalid, evalset_from_dataset, import_evalset
from runs.evaluation import (
    METRICS,
    EvaluationConflict,
    check_regression,
    compare_runs,
    create_baseline,
    launch_evaluation,
    leaderboard,
)
from runs.filters import EvaluationFilter
from runs.models import (
    Direction,
    EvalItem,
    EvalSet,
    Evaluation,
    ModelVersion,
    Prediction,
    RegisteredModel,
    RegressionBaseline,
    Run,
)
from runs.registry import archive_path, promote
from traces.models import Dataset
from tunixrt.api import OrjsonParser
from tunixrt.jobs import JobNotActive
from tunixrt.pagination import KeysetPagination
from tunixrt.roles import Action


def _errors(exc: EvalSetInvalid) -> dict[str, Any]:
    if isinstance(exc.errors, dict):
        return exc.errors
    return {"lines": [{"line": line, "error": msg} for line, msg in exc.errors]}


class EvalItemSerializer(serializers.ModelSerializer[EvalItem]):
    id = serializers.CharField(source="item_id")

    class Meta:
        model = EvalItem
        fields = ["id", "prompt", "expected_answer", "category", "difficulty", "section"]


class EvalSetSerializer(serializers.ModelSerializer[EvalSet]):
    class Meta:
        model = EvalSet
        fields = ["id", "name", "description", "source", "item_count", "created_at"]


class EvaluationSerializer(serializers.ModelSerializer[Evaluation]):
    eval_set = serializers.CharField(source="eval_set.name", read_only=True)
    awaiting_broker = serializers.BooleanField(read_only=True)

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "run",
            "eval_set",
            "baseline",
            "status",
            "max_new_tokens",
            "judge_name",
            "judge_version",
            "total",
            "done",
            "correct",
            "accuracy",
            "scorecard",
            "is_latest",
            "error",
            "attempt",
            "queued_at",
            "awaiting_broker",
            "created_at",
            "started_at",
            "finished_at",
        ]


class PredictionSerializer(serializers.ModelSerializer[Prediction]):
    item = EvalItemSerializer(read_only=True)

    class Meta:
        model = Prediction
        fields = ["item", "raw_output", "extracted_answer", "extraction", "correct", "match", "latency_ms"]


class EvalSetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet[EvalSet]
):
    """Eval sets: create from a JSONL body/upload or from a dataset's validation split."""

    queryset = EvalSet.objects.all()
    serializer_class = EvalSetSerializer
    pagination_class = KeysetPagination
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    parser_classes = [OrjsonParser, MultiPartParser]
    role_actions = {"create": Action.CREATE, "destroy": Action.CHANGE}

    @extend_schema(
        request={
            "application/json": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object"}},
                    "dataset": {"type": "string", "description": "build from this dataset's validation split"},
                },
            },
            "multipart/form-data": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "file": {"type": "string", "format": "binary"}},
            },
        },
        responses={201: EvalSetSerializer},
        summary="Create an eval set (JSONL file, items, or a dataset's validation split)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data
        if not isinstance(data, Mapping):
            raise ValidationError({"non_field_errors": ["Expected a JSON object or a form."]})
        name = str(data.get("name") or "")
        try:
            if data.get("dataset"):
                try:
                    dataset = Dataset.objects.by_key(str(data["dataset"]))
                except Dataset.DoesNotExist:
                    raise ValidationError({"dataset": [f"No dataset {data['dataset']!r}."]}) from None
                eval_set = evalset_from_dataset(dataset, name, user=request.user)
            elif "file" in request.FILES:
                eval_set = import_evalset(request.FILES["file"], name, source="upload", user=request.user)
            elif isinstance(data.get("items"), list):
                import orjson

                lines = io.BytesIO(b"\n".join(orjson.dumps(item) for item in data["items"]))
                eval_set = import_evalset(lines, name, source="api", user=request.user)
            elif request.content_type.startswith("multipart/"):
                raise ValidationError({"file": ["No file was sent."]})
            else:
                raise ValidationError({"items": ["Send items (a list), a JSONL file, or a dataset key."]})
        except EvalSetInvalid as exc:
            # A Response, not ValidationError, keeps the line numbers as numbers.
            return Response(_errors(exc), status=status.HTTP_400_BAD_REQUEST)
        return Response(EvalSetSerializer(eval_set).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=EvalItemSerializer(many=True), summary="The items of an eval set")
    @action(detail=True, methods=["get"], pagination_class=None)
    def items(self, request: Request, name: str | None = None) -> Response:
        eval_set = self.get_object()
        return Response(EvalItemSerializer(eval_set.items.order_by("position"), many=True).data)

    @extend_schema(responses={204: None, 409: dict}, summary="Delete an eval set (409 while evaluations use it)")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        eval_set = self.get_object()
        if eval_set.evaluations.exists():
            return Response(
                {"detail": f"Eval set {eval_set.name} has evaluations; delete them (or their runs) first."},
                status=status.HTTP_409_CONFLICT,
            )
        eval_set.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class EvaluationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Evaluation]):
    queryset = Evaluation.objects.select_related("eval_set")
    serializer_class = EvaluationSerializer
    filterset_class = EvaluationFilter
    pagination_class = KeysetPagination
    role_actions = {"cancel": Action.CHANGE}

    @extend_schema(
        parameters=[OpenApiParameter("wrong_only", bool, description="only the wrong answers")],
        responses=PredictionSerializer(many=True),
        summary="Every prediction of an evaluation",
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def predictions(self, request: Request, pk: str | None = None) -> Response:
        evaluation = self.get_object()
        qs = Prediction.objects.filter(evaluation=evaluation).select_related("item").order_by("item__position")
        if bool_param(request.query_params, "wrong_only"):
            qs = qs.filter(correct=False)
        return Response(PredictionSerializer(qs, many=True).data)

    @extend_schema(request=None, responses={200: EvaluationSerializer, 409: dict}, summary="Cancel")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        evaluation = self.get_object()
        try:
            evaluation.cancel()
        except JobNotActive as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(EvaluationSerializer(evaluation).data)


class EvaluateRequest(serializers.Serializer[Any]):
    eval_set = serializers.CharField()
    baseline = serializers.BooleanField(default=False, help_text="evaluate the untrained base model instead")
    max_new_tokens = serializers.IntegerField(default=64, min_value=1, max_value=1024)


def evaluate_run(request: Request, run: Run) -> Response:
    params = EvaluateRequest(data=request.data)
    params.is_valid(raise_exception=True)
    eval_set = EvalSet.objects.filter(name=params.validated_data["eval_set"]).first()
    if eval_set is None:
        raise ValidationError({"eval_set": [f"No eval set {params.validated_data['eval_set']!r}."]})
    try:
        evaluation = launch_evaluation(
            run,
            eval_set,
            baseline=params.validated_data["baseline"],
            max_new_tokens=params.validated_data["max_new_tokens"],
            user=request.user,
        )
    except EvaluationConflict as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED)


class LeaderboardRowSerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    run = serializers.IntegerField()
    evaluation = serializers.IntegerField()
    accuracy = serializers.FloatField()
    correct = serializers.IntegerField()
    total = serializers.IntegerField()
    dataset = serializers.CharField()
    base_model = serializers.CharField()
    method = serializers.CharField()
    finished_at = serializers.DateTimeField()


def bool_param(params: Any, name: str) -> bool:
    """A yes/no query parameter: 1/true/yes/on or 0/false/no/off (any case), absent is no; else a 400."""
    raw = str(params.get(name, "")).strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValidationError({name: ["Use true or false (also 1/0, yes/no, on/off)."]})


class LeaderboardSerializer(serializers.Serializer[Any]):
    eval_set = serializers.CharField()
    rows = LeaderboardRowSerializer(many=True)


def leaderboard_rows(eval_set: EvalSet, params: Any, limit: int) -> list[dict[str, Any]]:
    qs = leaderboard(
        eval_set,
        dataset=params.get("dataset", ""),
        base_model=params.get("base_model", ""),
        baseline=bool_param(params, "baseline"),
    )
    return [
        {
            "rank": n,
            "run": e.run_id,
            "evaluation": e.pk,
            "accuracy": e.accuracy,
            "correct": e.correct,
            "total": e.total,
            "dataset": e.run.dataset.key,
            "base_model": e.run.base_model,
            "method": e.run.method,
            "finished_at": e.finished_at,
        }
        for n, e in enumerate(qs[:limit], start=1)
    ]


@extend_schema(
    parameters=[
        OpenApiParameter("eval_set", str, required=True),
        OpenApiParameter("dataset", str),
        OpenApiParameter("base_model", str),
        OpenApiParameter("baseline", bool, description="rank base-model (untrained) evaluations instead"),
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, description="rows (default 100)"),
    ],
    responses=LeaderboardSerializer,
    summary="Runs ranked by their latest evaluation on an eval set",
)
@api_view(["GET"])
def leaderboard_view(request: Request) -> Response:
    name = request.query_params.get("eval_set", "")
    eval_set = EvalSet.objects.filter(name=name).first()
    if eval_set is None:
        raise ValidationError({"eval_set": [f"No eval set {name!r}." if name else "This parameter is required."]})
    raw = request.query_params.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise ValidationError({"limit": ["Ensure this value is between 1 and 1,000."]})
    rows = leaderboard_rows(eval_set, request.query_params, int(raw))
    return Response({"eval_set": eval_set.name, "rows": rows})


@extend_schema(
    parameters=[
        OpenApiParameter("eval_set", str, required=True),
        OpenApiParameter("a", int, required=True),
        OpenApiParameter("b", int, required=True),
    ],
    responses={200: OpenApiTypes.OBJECT, 409: dict},
    summary="Compare two runs item by item on an eval set (409 unless both have evaluated it)",
)
@api_view(["GET"])
def compare_view(request: Request) -> Response:
    errors: dict[str, list[str]] = {}
    eval_set = EvalSet.objects.filter(name=request.query_params.get("eval_set", "")).first()
    if eval_set is None:
        errors["eval_set"] = ["An existing eval set name is required."]
    runs = {}
    for key in ("a", "b"):
        raw = request.query_params.get(key, "")
        run = Run.objects.filter(pk=int(raw)).first() if raw.isascii() and raw.isdigit() and len(raw) < 18 else None
        if run is None:
            errors[key] = ["An existing run id is required."]
        runs[key] = run
    if errors:
        raise ValidationError(errors)
    assert eval_set is not None
    try:
        result = compare_runs(eval_set, runs["a"], runs["b"])  # type: ignore[arg-type]
    except EvaluationConflict as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response(
        {
            "eval_set": eval_set.name,
            "a": {"run": runs["a"].pk, "evaluation": result["a"].pk, "accuracy": result["a"].accuracy},  # type: ignore[union-attr]
            "b": {"run": runs["b"].pk, "evaluation": result["b"].pk, "accuracy": result["b"].accuracy},  # type: ignore[union-attr]
            "counts": result["counts"],
            "items": result["items"],
        }
    )


class NameRelatedField(serializers.SlugRelatedField[Any]):
    """A related object by name; a NUL is refused here, PostgreSQL would fail on it in the lookup."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            raise serializers.ValidationError("Null characters are not allowed.")
        return super().to_internal_value(data)


class BaselineSerializer(serializers.ModelSerializer[RegressionBaseline]):
    eval_set = NameRelatedField(slug_field="name", queryset=EvalSet.objects.all())
    metric = serializers.ChoiceField(choices=METRICS, default="accuracy")
    direction = serializers.ChoiceField(choices=Direction.choices, default=Direction.HIGHER)
    tolerance_pct = serializers.FloatField(default=0.0, min_value=0.0, max_value=100.0)

    class Meta:
        model = RegressionBaseline
        fields = ["name", "run", "eval_set", "metric", "direction", "tolerance_pct", "value", "created_at"]
        read_only_fields = ["value", "created_at"]


class BaselineViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[RegressionBaseline],
):
    """Regression baselines: the value of a reference run's latest evaluation, with a direction and tolerance."""

    queryset = RegressionBaseline.objects.select_related("eval_set")
    serializer_class = BaselineSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    pagination_class = None
    # Checking a run against a gate is a read (CI runs it with a viewer's token).
    role_actions = {"create": Action.BASELINES, "destroy": Action.BASELINES, "check": Action.VIEW}

    @extend_schema(responses={201: BaselineSerializer, 409: dict}, summary="Create a baseline from a run's evaluation")
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = BaselineSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            baseline = create_baseline(
                data["name"],
                data["run"],
                data["eval_set"],
                metric=data["metric"],
                direction=data["direction"],
                tolerance_pct=data["tolerance_pct"],
            )
        except EvaluationConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(BaselineSerializer(baseline).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("run", int, required=True)],
        request=None,
        responses={200: OpenApiTypes.OBJECT, 409: dict},
        summary="Check a run against the baseline (passed: false on a regression)",
    )
    @action(detail=True, methods=["get", "post"])
    def check(self, request: Request, name: str | None = None) -> Response:
        baseline = self.get_object()
        body = request.data if isinstance(request.data, Mapping) else {}
        raw = str(request.query_params.get("run") or body.get("run") or "")
        run = Run.objects.filter(pk=int(raw)).first() if raw.isascii() and raw.isdigit() and len(raw) < 18 else None
        if run is None:
            raise ValidationError({"run": ["An existing run id is required."]})
        try:
            return Response(check_regression(baseline, run))
        except EvaluationConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


class ModelVersionSerializer(serializers.ModelSerializer[ModelVersion]):
    model = serializers.CharField(source="model.name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["model", "version", "run", "checksum", "size_bytes", "metrics", "provenance", "created_at"]


class RegisteredModelSerializer(serializers.ModelSerializer[RegisteredModel]):
    versions = ModelVersionSerializer(many=True, read_only=True)

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "created_at", "versions"]


class PromoteRequest(serializers.Serializer[Any]):
    run = serializers.IntegerField(min_value=1)
    name = serializers.RegexField(
        r"^[a-z0-9_-]+$",
        max_length=100,
        error_messages={"invalid": "Use 1–100 lowercase letters, digits, - or _."},
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class RegisteredModelViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[RegisteredModel]
):
    """The model registry: promote runs to named, versioned models; download a version as .tar.gz."""

    queryset = RegisteredModel.objects.prefetch_related("versions")
    serializer_class = RegisteredModelSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    pagination_class = None
    role_actions = {"create": Action.PROMOTE}

    @extend_schema(request=PromoteRequest, responses={201: ModelVersionSerializer, 409: dict}, summary="Promote a run")
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        params = PromoteRequest(data=request.data)
        params.is_valid(raise_exception=True)
        run = Run.objects.filter(pk=params.validated_data["run"]).select_related("dataset").first()
        if run is None:
            raise ValidationError({"run": ["No such run."]})
        try:
            version = promote(
                run,
                params.validated_data["name"],
                description=params.validated_data.get("description", ""),
                user=request.user,
            )
        except EvaluationConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except ValueError as exc:  # the registry's own name rule, should it ever be stricter than the field's
            raise ValidationError({"name": [str(exc).removeprefix("name: ")]}) from None
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/gzip"): OpenApiTypes.BINARY}, summary="Download a version")
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version>\d+)/download")
    def download(self, request: Request, name: str | None = None, version: str = "") -> FileResponse:
        entry = get_object_or_404(ModelVersion, model__name=name, version=int(version))
        path = archive_path(entry)
        if path is None:
            raise Http404
        return FileResponse(path.open("rb"), as_attachment=True, filename=f"{name}-v{version}.tar.gz")
