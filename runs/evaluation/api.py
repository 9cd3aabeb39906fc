"""The evaluation API: eval sets, evaluations, leaderboard, run comparison."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from runs.evaluation.evalsets import EvalSetInvalid, evalset_from_dataset, import_evalset
from runs.evaluation.leaderboard import compare_runs, leaderboard
from runs.evaluation.running import EvaluationConflict, launch_evaluation
from runs.filters import EvaluationFilter
from runs.models import (
    EvalItem,
    EvalSet,
    Evaluation,
    Prediction,
    Run,
)
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

    @extend_schema(
        responses={204: None, 409: dict}, summary="Delete an eval set (409 while evaluations or GRPO runs use it)"
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        eval_set = self.get_object()
        if eval_set.evaluations.exists():
            return Response(
                {"detail": f"Eval set {eval_set.name} has evaluations; delete them (or their runs) first."},
                status=status.HTTP_409_CONFLICT,
            )
        if eval_set.grpo_runs.exists():
            return Response(
                {"detail": f"Eval set {eval_set.name} holds the prompts of GRPO runs; delete those runs first."},
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
