"""The dataset API: build, list, detail, export (streamed), delete."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from traces.api.serializers import DatasetBuildSerializer, DatasetDetailSerializer, DatasetListSerializer
from traces.choices import DatasetStatus, ExportFormat, Split
from traces.datasets import BuildInvalid, build_dataset, validate_build_spec
from traces.exporting import iter_dataset_lines
from traces.models import Dataset, DatasetInUse
from tunixrt.pagination import KeysetPagination
from tunixrt.roles import Action


def export_response(dataset: Dataset, fmt: str, split: str) -> StreamingHttpResponse:
    """A streamed JSONL download (validates format and split first: ValueError if bad)."""
    lines = iter_dataset_lines(dataset, fmt, split)
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    filename = f"{dataset.name}-v{dataset.version}.{fmt}.{split}.jsonl"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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
        if errors:
            raise ValidationError(errors)
        return export_response(dataset, fmt, split)
