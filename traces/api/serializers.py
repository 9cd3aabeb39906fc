"""Trace serializers. Input validation is the shared validator (traces.validation)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from traces.choices import DatasetStrategy, ScoreCriteria
from traces.models import Dataset, Trace, TraceScore
from traces.validation import STEPS_MAX, CleanTrace, TraceInvalid, validate_trace


class StepSerializer(serializers.Serializer[Any]):
    i = serializers.IntegerField(min_value=0)
    type = serializers.CharField(max_length=64)
    content = serializers.CharField(max_length=20_000)


class TraceInputSerializer(serializers.Serializer[Any]):
    """A trace as captured. The fields document the schema; `validate_trace` enforces it."""

    trace_version = serializers.CharField(max_length=64)
    prompt = serializers.CharField(max_length=50_000)
    # A ListField, not many=True: drf-spectacular states its length bounds as minItems/maxItems.
    steps = serializers.ListField(child=StepSerializer(), min_length=1, max_length=STEPS_MAX)
    final_answer = serializers.CharField(max_length=50_000)
    meta = serializers.DictField(required=False)

    def to_internal_value(self, data: Any) -> CleanTrace:
        try:
            return validate_trace(data)
        except TraceInvalid as exc:
            raise serializers.ValidationError(exc.errors) from None


class TraceBatchInputSerializer(serializers.Serializer[Any]):
    """Documentation only: the batch body (a JSON array is accepted too)."""

    traces = TraceInputSerializer(many=True)


class TraceCreatedSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    trace_version = serializers.CharField()


class TraceBatchCreatedSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(child=serializers.IntegerField())
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class ScoreSerializer(serializers.ModelSerializer[TraceScore]):
    class Meta:
        model = TraceScore
        fields = ["criteria", "score", "details", "updated_at"]


class ScoreRequestSerializer(serializers.Serializer[Any]):
    criteria = serializers.ChoiceField(choices=ScoreCriteria.choices, default=ScoreCriteria.BASELINE)


class TraceListSerializer(serializers.ModelSerializer[Trace]):
    """Narrow: no steps and no meta."""

    class Meta:
        model = Trace
        fields = [
            "id",
            "created_at",
            "trace_version",
            "prompt",
            "final_answer",
            "source",
            "tags",
            "step_count",
            "char_count",
            "content_hash",
        ]


class TraceDetailSerializer(serializers.ModelSerializer[Trace]):
    steps = StepSerializer(many=True)
    scores = ScoreSerializer(many=True, read_only=True)

    class Meta:
        model = Trace
        fields = [*TraceListSerializer.Meta.fields, "steps", "meta", "scores"]


class TraceCompareSerializer(serializers.Serializer[Any]):
    base = TraceDetailSerializer()
    other = TraceDetailSerializer()


class DatasetBuildSerializer(serializers.Serializer[Any]):
    """A dataset build request. `validate_build_spec` enforces it; fields document it."""

    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    trace_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    strategy = serializers.ChoiceField(choices=DatasetStrategy.choices, default=DatasetStrategy.LATEST)
    seed = serializers.IntegerField(required=False, min_value=0, help_text="required for random")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    validation_fraction = serializers.FloatField(required=False, min_value=0, max_value=0.5)
    validation_seed = serializers.IntegerField(required=False, min_value=0)
    q = serializers.CharField(required=False)
    source = serializers.CharField(required=False)  # type: ignore[assignment]
    tag = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    min_steps = serializers.IntegerField(required=False)
    max_steps = serializers.IntegerField(required=False)


class DatasetListSerializer(serializers.ModelSerializer[Dataset]):
    key = serializers.CharField(read_only=True)
    count = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["key", "name", "version", "description", "status", "count", "created_at"]

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
            "key", "name", "version", "description", "status", "error", "spec", "stats",
            "created_by", "created_at", "built_at", "attempt", "queued_at", "awaiting_broker",
        ]

    def get_spec(self, obj: Dataset) -> dict[str, Any]:
        spec = dict(obj.spec)
        ids = spec.get("trace_ids")
        if isinstance(ids, list) and len(ids) > 100:
            spec["trace_ids"] = [*ids[:100], f"… {len(ids) - 100} more"]
        return spec
