"""The model registry API: promote a run to a named model's next version; list; download a version."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from runs.evaluation.running import EvaluationConflict
from runs.models import ModelVersion, RegisteredModel, Run
from runs.registry.promotion import archive_path, promote
from tunixrt.roles import Action


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
