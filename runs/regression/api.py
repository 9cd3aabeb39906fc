"""The regression gate API: baselines (create, list, delete) and checking a run against one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from runs.evaluation.running import EvaluationConflict
from runs.models import Direction, EvalSet, RegressionBaseline, Run
from runs.regression.gates import METRICS, BaselineInvalid, check_regression, create_baseline, validate_baseline
from tunixrt.roles import Action


# The fields document the request (the schema) and shape the answer; `validate_baseline`, which the
# regression page shares, checks the request.
class BaselineSerializer(serializers.ModelSerializer[RegressionBaseline]):
    eval_set = serializers.SlugRelatedField(slug_field="name", queryset=EvalSet.objects.all())
    metric = serializers.ChoiceField(choices=METRICS, default="accuracy")
    direction = serializers.ChoiceField(choices=Direction.choices, default=Direction.HIGHER)
    tolerance_pct = serializers.FloatField(default=0.0, min_value=0.0, max_value=100.0)

    class Meta:
        model = RegressionBaseline
        fields = ["name", "run", "eval_set", "metric", "direction", "tolerance_pct", "value", "created_at"]
        read_only_fields = ["value", "created_at"]

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's "Expected a dictionary" error
        try:
            return validate_baseline(data)
        except BaselineInvalid as exc:
            raise serializers.ValidationError(exc.errors) from None


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
