"""The dataset API: build, list, detail, export (streamed), delete."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from runs.training import templates
from traces.choices import DatasetKind, DatasetStatus, DatasetStrategy, ExportFormat, PairSource, Split
from traces.datasets.building import BuildInvalid, build_dataset, validate_build_spec
from traces.datasets.exporting import check_format, check_template, export_response
from traces.models import Dataset, DatasetInUse
from tunixrt.pagination import KeysetPagination
from tunixrt.roles import Action


class DatasetBuildSerializer(serializers.Serializer[Any]):
    """A dataset build request. `validate_build_spec` enforces it; fields document it."""

    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    kind = serializers.ChoiceField(
        choices=DatasetKind.choices, default=DatasetKind.SFT,
        help_text="sft: traces (trace filters, trace_ids); preference: preference pairs (pair filters, pair_ids)",
    )
    trace_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    pair_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, help_text="preference datasets: these pairs"
    )
    strategy = serializers.ChoiceField(choices=DatasetStrategy.choices, default=DatasetStrategy.LATEST)
    seed = serializers.IntegerField(required=False, min_value=0, help_text="required for random")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    validation_fraction = serializers.FloatField(required=False, min_value=0, max_value=0.5)
    validation_seed = serializers.IntegerField(required=False, min_value=0)
    q = serializers.CharField(required=False)
    source = serializers.CharField(  # type: ignore[assignment]
        required=False, help_text=f"traces: their source; pairs: one of {', '.join(PairSource.values)}"
    )
    created_by = serializers.CharField(required=False, help_text="preference datasets: pairs this username made")
    tag = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    min_steps = serializers.IntegerField(required=False)
    max_steps = serializers.IntegerField(required=False)
    rating = serializers.ChoiceField(
        choices=["good", "bad", "unrated"], required=False, help_text="the traces' current (newest) rating"
    )
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, max_length=64, help_text="traces people gave this label"
    )


class DatasetListSerializer(serializers.ModelSerializer[Dataset]):
    key = serializers.CharField(read_only=True)
    count = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["key", "name", "version", "kind", "description", "status", "count", "created_at"]

    def get_count(self, obj: Dataset) -> int | None:
        count = obj.stats.get("count")
        return int(count) if count is not None else None


class DatasetDetailSerializer(serializers.ModelSerializer[Dataset]):
    key = serializers.CharField(read_only=True)
    spec = serializers.SerializerMethodField()
    # null once the user who built it is deleted
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    awaiting_broker = serializers.BooleanField(read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "key", "name", "version", "kind", "description", "status", "error", "spec", "stats",
            "created_by", "created_at", "built_at", "attempt", "queued_at", "awaiting_broker",
        ]

    def get_spec(self, obj: Dataset) -> dict[str, Any]:
        spec = dict(obj.spec)
        for field in ("trace_ids", "pair_ids"):
            ids = spec.get(field)
            if isinstance(ids, list) and len(ids) > 100:
                spec[field] = [*ids[:100], f"… {len(ids) - 100} more"]
        return spec


class DatasetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Dataset],
):
    """Immutable, versioned datasets addressed by key (`name@vN`)."""

    queryset = Dataset.objects.all()
    pagination_class = KeysetPagination
    lookup_field = "key"
    lookup_value_regex = "[^/]+"
    role_actions = {"create": Action.CREATE, "destroy": Action.CHANGE}

    def get_queryset(self) -> QuerySet[Dataset]:
        qs = Dataset.objects.all()
        if self.action == "list":
            q = self.request.query_params.get("q", "").strip()
            if q:
                qs = qs.filter(Q(name__icontains=q) | Q(description__icontains=q))
            name = self.request.query_params.get("name", "").strip()
            if name:
                qs = qs.filter(name=name)
            kind = self.request.query_params.get("kind", "")
            if kind:
                if kind not in DatasetKind.values:
                    raise ValidationError({"kind": [f"Must be one of {', '.join(DatasetKind.values)}."]})
                qs = qs.filter(kind=kind)
            qs = qs.defer("spec")
        return qs

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # ?format= names the export format here, not a renderer.
        return super().perform_content_negotiation(request, force=force or self.action == "export")

    def get_object(self) -> Dataset:
        try:
            dataset = Dataset.objects.by_key(self.kwargs["key"])
        except Dataset.DoesNotExist:
            raise Http404 from None
        self.check_object_permissions(self.request, dataset)
        return dataset

    def get_serializer_class(self) -> type[Any]:
        if self.action == "list":
            return DatasetListSerializer
        if self.action == "create":
            return DatasetBuildSerializer
        return DatasetDetailSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="text in name or description"),
            OpenApiParameter("name", str, description="exact name: all its versions"),
            OpenApiParameter("kind", str, enum=DatasetKind.values, description="sft or preference datasets only"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=DatasetBuildSerializer,
        responses={201: DatasetDetailSerializer, 202: DatasetDetailSerializer},
        summary="Build the next version of a dataset (202 when queued for a worker)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        try:
            spec = validate_build_spec(request.data)
            dataset = build_dataset(spec, request.user)
        except BuildInvalid as exc:
            raise ValidationError(exc.errors) from None
        code = status.HTTP_201_CREATED if dataset.status == DatasetStatus.READY else status.HTTP_202_ACCEPTED
        return Response(DatasetDetailSerializer(dataset).data, status=code)

    @extend_schema(responses={204: None, 409: dict}, summary="Delete a dataset (409 when runs used it)")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dataset = self.get_object()
        try:
            dataset.delete()
        except DatasetInUse as exc:
            return Response({"detail": str(exc), "runs": exc.run_ids}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=ExportFormat.values, default=ExportFormat.TRACE),
            OpenApiParameter("split", str, enum=[*Split.values, "all"], default="all"),
            OpenApiParameter(
                "template",
                str,
                enum=[*templates.TEMPLATES],
                description="chat template of tunix_sft's text and dpo's turns (default gemma), of chat's text",
            ),
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, 409: dict},
        summary="Export as JSONL (streamed; 409 while the dataset builds or after its build failed)",
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, key: str | None = None) -> Any:
        dataset = self.get_object()
        if dataset.status != DatasetStatus.READY:
            return Response(
                {"detail": f"Dataset {dataset.key} is {dataset.status}, not ready."},
                status=status.HTTP_409_CONFLICT,
            )
        # `format` is also DRF's renderer override parameter, so read the raw GET.
        fmt = request._request.GET.get("format", ExportFormat.TRACE)
        split = request.query_params.get("split", "all")
        errors: dict[str, list[str]] = {}
        if fmt not in ExportFormat.values:
            errors["format"] = [f"Must be one of {', '.join(ExportFormat.values)}."]
        if split not in (*Split.values, "all"):
            errors["split"] = ["Must be train, validation or all."]
        template = request.query_params.get("template") or None
        if not errors:
            try:
                check_format(dataset, fmt)
            except ValueError as exc:
                errors["format"] = [str(exc)]
        if not errors:
            try:
                check_template(fmt, template)
            except ValueError as exc:
                errors["template"] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        return export_response(dataset, fmt, split, template)
