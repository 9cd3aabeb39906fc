"""Trace serializers. Input validation is the shared validator (traces.validation)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from traces.api.reads import LIST_FIELDS
from traces.choices import Rating, ScoreCriteria
from traces.labelling import BULK_ACTIONS, COMMENT_MAX, LABEL_MAX, current_rating
from traces.models import Trace, TraceLabel, TraceReview, TraceScore
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


# Every column a list item or the detail can carry, in the detail's order.
TRACE_FIELDS = [f for f in LIST_FIELDS if f not in ("url", "steps", "meta")]


class TraceListSerializer(serializers.ModelSerializer[Trace]):
    """Documentation of a list item as sent by default: what the trace list shows, and `url` for the rest.

    `?fields=` chooses others (traces.api.reads.LIST_FIELDS), `steps` and `meta` included.
    """

    url = serializers.URLField(read_only=True, help_text="the whole trace: GET /api/traces/{id}")
    rating = serializers.ChoiceField(
        choices=Rating.choices, read_only=True, allow_null=True,
        help_text="the newest rating any reviewer gave; null when unrated",
    )
    labels = serializers.ListField(child=serializers.CharField(), source="label_names", read_only=True)

    class Meta:
        model = Trace
        fields = [
            "id", "url", "created_at", "prompt", "final_answer", "source", "tags", "step_count", "rating", "labels",
        ]


class ReviewSerializer(serializers.ModelSerializer[TraceReview]):
    user: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = TraceReview
        fields = ["user", "rating", "comment", "rated_at", "updated_at"]


class LabelSerializer(serializers.ModelSerializer[TraceLabel]):
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = TraceLabel
        fields = ["label", "created_by", "created_at"]


class TraceDetailSerializer(serializers.ModelSerializer[Trace]):
    steps = StepSerializer(many=True)
    scores = ScoreSerializer(many=True, read_only=True)
    rating = serializers.SerializerMethodField(help_text="the newest rating any reviewer gave; null when unrated")
    labels = serializers.ListField(child=serializers.CharField(), source="label_names", read_only=True)
    reviews = ReviewSerializer(many=True, read_only=True)
    label_details = LabelSerializer(many=True, read_only=True, source="labels")

    class Meta:
        model = Trace
        fields = [*TRACE_FIELDS, "steps", "meta", "scores", "reviews", "label_details"]

    @extend_schema_field(serializers.ChoiceField(choices=Rating.choices, allow_null=True))
    def get_rating(self, obj: Trace) -> str | None:
        if hasattr(obj, "rating"):  # annotated by TraceQuerySet.with_review
            rating: str | None = obj.rating
            return rating
        return current_rating(obj)


class ReviewRequestSerializer(serializers.Serializer[Any]):
    """Your review of a trace. Omitted fields stay as they were. `traces.labelling.parse_review` enforces it."""

    rating = serializers.ChoiceField(
        choices=Rating.choices, required=False, allow_blank=True, allow_null=True,
        help_text="good or bad; empty or null clears your rating",
    )
    comment = serializers.CharField(required=False, allow_blank=True, max_length=COMMENT_MAX)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=LABEL_MAX), required=False, max_length=20, help_text="labels to add"
    )
    remove_labels = serializers.ListField(
        child=serializers.CharField(max_length=LABEL_MAX), required=False, max_length=20,
        help_text="labels to remove (yours; anyone's for a maintainer)",
    )


class ReviewStateSerializer(serializers.Serializer[Any]):
    """A trace's review state after a change."""

    id = serializers.IntegerField()
    rating = serializers.ChoiceField(choices=Rating.choices, allow_null=True)
    labels = LabelSerializer(many=True)
    reviews = ReviewSerializer(many=True)


class BulkRequestSerializer(serializers.Serializer[Any]):
    """A bulk action on up to 1,000 traces. `traces.labelling.parse_bulk` enforces it."""

    action = serializers.ChoiceField(choices=[(a, a) for a in BULK_ACTIONS])
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=1000)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=LABEL_MAX), required=False, help_text="for action=label"
    )
    rating = serializers.ChoiceField(
        choices=Rating.choices, required=False, allow_blank=True, help_text="for action=rate; empty clears"
    )


class BulkRefusedSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    reason = serializers.CharField()
    datasets = serializers.ListField(child=serializers.CharField(), required=False)


class BulkResultSerializer(serializers.Serializer[Any]):
    action = serializers.CharField()
    ids = serializers.ListField(child=serializers.IntegerField(), help_text="the traces acted on")
    added = serializers.IntegerField(required=False, help_text="label: labels newly added")
    deleted = serializers.ListField(child=serializers.IntegerField(), required=False)
    refused = BulkRefusedSerializer(many=True, required=False)


class LabelCountSerializer(serializers.Serializer[Any]):
    label = serializers.CharField()  # type: ignore[assignment]
    count = serializers.IntegerField()


class FacetsSerializer(serializers.Serializer[Any]):
    ratings = serializers.DictField(child=serializers.IntegerField(), help_text="traces per current rating")
    labels = LabelCountSerializer(many=True, help_text="the 50 most used labels")


class TagCountSerializer(serializers.Serializer[Any]):
    tag = serializers.CharField()
    count = serializers.IntegerField()


class TraceSummarySerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="traces matching the filters")
    exact = serializers.BooleanField(
        help_text="false above 100,000 matches on PostgreSQL: `count` is then the planner's estimate"
    )
    scope = serializers.IntegerField(help_text="how many of the newest matching traces the facets counted")
    # Inline: `source` is an attribute of every DRF field, so a serializer class cannot declare it.
    sources = inline_serializer(
        "SourceCount",
        fields={"source": serializers.CharField(), "count": serializers.IntegerField()},
        many=True,
        help_text="the most frequent sources",
    )
    tags = TagCountSerializer(many=True, help_text="the most frequent tags")


class TraceCompareSerializer(serializers.Serializer[Any]):
    base = TraceDetailSerializer()
    other = TraceDetailSerializer()
