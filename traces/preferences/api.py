"""The preference pair API: capture (single and batch), generate from evaluations, browse, delete."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from runs.models import Evaluation
from traces.api.reads import datetime_text
from traces.api.views import require_body_within
from traces.choices import PairSource
from traces.filters import PairFilter
from traces.models import PairInUse, PreferencePair
from traces.preferences.generating import GenerationInvalid, pairs_from_evaluations
from traces.validation import NOTE_MAX, TEXT_MAX, CleanPair, PairInvalid, validate_pair
from tunixrt.pagination import KeysetPagination
from tunixrt.roles import Action


class PairInputSerializer(serializers.Serializer[Any]):
    """A preference pair as captured. The fields document the schema; `validate_pair` enforces it."""

    prompt = serializers.CharField(max_length=TEXT_MAX)
    chosen = serializers.CharField(max_length=TEXT_MAX, help_text="the better answer")
    rejected = serializers.CharField(max_length=TEXT_MAX, help_text="the worse answer; must differ from chosen")
    note = serializers.CharField(required=False, allow_blank=True, max_length=NOTE_MAX)
    meta = serializers.DictField(required=False)

    def to_internal_value(self, data: Any) -> CleanPair:
        try:
            return validate_pair(data)
        except PairInvalid as exc:
            raise serializers.ValidationError(exc.errors) from None


class PairBatchInputSerializer(serializers.Serializer[Any]):
    """Documentation only: the batch body (a JSON array is accepted too)."""

    pairs = PairInputSerializer(many=True)


class PairCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class PairBatchCreatedSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(child=serializers.IntegerField())
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class PairListSerializer(serializers.ModelSerializer[PreferencePair]):
    """Narrow: the prompt and provenance, not the two answers."""

    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = PreferencePair
        fields = ["id", "created_at", "source", "prompt", "note", "created_by", "content_hash"]


class PairDetailSerializer(serializers.ModelSerializer[PreferencePair]):
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    datasets = serializers.ListField(
        child=serializers.CharField(), source="dataset_keys", read_only=True, help_text="datasets holding the pair"
    )

    class Meta:
        model = PreferencePair
        fields = [
            *PairListSerializer.Meta.fields,
            "chosen",
            "rejected",
            "meta",
            "chosen_trace",
            "rejected_trace",
            "chosen_evaluation",
            "rejected_evaluation",
            "eval_item",
            "datasets",
        ]


class FromEvaluationsSerializer(serializers.Serializer[Any]):
    """Two completed evaluations on one eval set: a trained run's and its baseline's, or two runs'."""

    evaluation = serializers.IntegerField(min_value=1)
    other = serializers.IntegerField(min_value=1)


class GeneratedPairsSerializer(serializers.Serializer[Any]):
    compared = serializers.IntegerField(help_text="items both evaluations answered")
    disagreements = serializers.IntegerField(help_text="items one answered correctly and the other did not")
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="pairs stored before")
    skipped = serializers.IntegerField(help_text="disagreements whose outputs make no valid pair")
    ids = serializers.ListField(child=serializers.IntegerField())


def evaluations_from(data: Any) -> tuple[Evaluation, Evaluation]:
    """The two evaluations a request names (ValidationError naming the field otherwise)."""
    params = FromEvaluationsSerializer(data=data)
    params.is_valid(raise_exception=True)
    found = Evaluation.objects.select_related("eval_set").in_bulk(
        [params.validated_data["evaluation"], params.validated_data["other"]]
    )
    errors = {
        name: [f"No evaluation {params.validated_data[name]}."]
        for name in ("evaluation", "other")
        if params.validated_data[name] not in found
    }
    if errors:
        raise ValidationError(errors)
    return found[params.validated_data["evaluation"]], found[params.validated_data["other"]]


def _items(data: Any) -> list[Any]:
    items = data["pairs"] if isinstance(data, dict) and list(data) == ["pairs"] else data
    limit = settings.TRACE_BATCH_MAX_ITEMS
    if not isinstance(items, list):
        raise ValidationError({"pairs": ['Expected a JSON array of pairs, or {"pairs": [...]}.']})
    if not 1 <= len(items) <= limit:
        raise ValidationError({"pairs": [f"Send between 1 and {limit:,} pairs (got {len(items)})."]})
    return items


class PreferencePairViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[PreferencePair],
):
    """Preference pairs: for a prompt, a chosen answer better than a rejected one. Immutable: capture again."""

    queryset = PreferencePair.objects.select_related("created_by")
    filterset_class = PairFilter
    pagination_class = KeysetPagination
    role_actions = {
        "create": Action.CREATE,
        "batch": Action.CREATE,
        "from_evaluations": Action.CREATE,
        "destroy": Action.CHANGE,
    }

    def get_queryset(self) -> QuerySet[PreferencePair]:
        qs = PreferencePair.objects.select_related("created_by")
        if self.action == "list":
            return qs.defer("chosen", "rejected", "meta")
        return qs

    def get_serializer_class(self) -> type[Any]:
        if self.action == "list":
            return PairListSerializer
        if self.action == "create":
            return PairInputSerializer
        return PairDetailSerializer

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # As for traces: read and size-check the body before a session's CSRF check parses it.
        if self.action == "create":
            require_body_within(request, settings.TRACE_MAX_BYTES, "The pair")
        elif self.action == "batch":
            require_body_within(request, settings.TRACE_BATCH_MAX_BYTES, "The batch")
        super().initial(request, *args, **kwargs)

    @extend_schema(responses={204: None, 409: dict}, summary="Delete a pair (409 while a dataset holds it)")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        pair = self.get_object()
        try:
            pair.delete()
        except PairInUse as exc:
            return Response({"detail": str(exc), "datasets": exc.keys}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=PairInputSerializer,
        responses={201: PairCreatedSerializer, 200: PairCreatedSerializer},
        summary="Capture one preference pair (200 with the stored id if its prompt, chosen and rejected are stored)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = PairInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = PreferencePair.objects.ingest([serializer.validated_data], PairSource.API, request.user)[0]
        return Response(
            {"id": result.id, "created_at": datetime_text(result.created_at)},  # as the pair's reads write it
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=PairBatchInputSerializer,
        responses={201: PairBatchCreatedSerializer, 200: PairBatchCreatedSerializer},
        summary="Capture 1–1,000 preference pairs at once, all or nothing",
    )
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def batch(self, request: Request) -> Response:
        items = _items(request.data)
        max_bytes = settings.TRACE_MAX_BYTES
        cleans: list[CleanPair] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                clean = validate_pair(item)
            except PairInvalid as exc:
                errors.append({"index": index, "errors": exc.errors})
                continue
            if clean.size > max_bytes:
                too_big = {"non_field_errors": [f"Pair is larger than {max_bytes:,} bytes."]}
                errors.append({"index": index, "errors": too_big})
            cleans.append(clean)
        if errors:
            detail = f"{len(errors)} of {len(items)} pairs are invalid; nothing was stored."
            return Response({"detail": detail, "items": errors}, status=status.HTTP_400_BAD_REQUEST)
        results = PreferencePair.objects.ingest(cleans, PairSource.API, request.user)
        created = sum(r.created for r in results)
        return Response(
            {"ids": [r.id for r in results], "created": created, "duplicates": len(results) - created},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=FromEvaluationsSerializer,
        responses={201: GeneratedPairsSerializer, 200: GeneratedPairsSerializer},
        summary="Generate pairs from two evaluations on one eval set: for each item one got right and the other "
        "wrong, the right output is chosen over the wrong one (200 when every pair was stored before)",
    )
    @action(detail=False, methods=["post"], url_path="from-evaluations", filter_backends=[], pagination_class=None)
    def from_evaluations(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
        first, second = evaluations_from(request.data)
        try:
            result = pairs_from_evaluations(first, second, request.user)
        except GenerationInvalid as exc:
            raise ValidationError(exc.errors) from None
        return Response(
            GeneratedPairsSerializer(result).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )
