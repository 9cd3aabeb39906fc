"""Trace serializers. Input validation is the shared validator (traces.validation)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from traces.choices import ScoreCriteria
from traces.models import Trace, TraceScore
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
